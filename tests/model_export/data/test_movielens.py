import os
from pathlib import Path

import pytest

from model_export.data import movielens
from model_export.data.format import Dataset


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    given = os.environ.get("R2EC_RECBOLE_WHEEL")
    if given:
        return Path(given)
    return movielens.find_wheel(tmp_path_factory.mktemp("wheels"))  # pip download from the package index


def test_movielens_from_the_recbole_wheel(wheel, tmp_path):
    ds = movielens.build(tmp_path / "ml", wheel=wheel)
    assert len(ds.catalog) == 1682 and len(ds.interactions) == 100_000
    toy = ds.catalog.get("1")
    assert toy.title == "Toy Story (1995)" and toy.year == "1995"
    assert toy.genres == ["Animation", "Children's", "Comedy"]
    assert toy.rating_count == 452 and toy.average_rating == pytest.approx(3.9)
    again = Dataset.load(tmp_path / "ml")
    assert len(again.interactions) == 100_000 and again.domain == "movies"
    assert all(isinstance(x.item_id, str) for x in again.interactions[:10])
