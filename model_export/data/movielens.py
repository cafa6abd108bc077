"""MovieLens-100K, taken offline from the RecBole 1.2.1 wheel (which ships it as atomic files)."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import tempfile
import zipfile
from collections import defaultdict
from pathlib import Path

from model_export.data.format import Dataset, Interaction
from r2ec.catalog import Catalog, Item

RECBOLE = "recbole==1.2.1"
_PREFIX = "recbole/dataset_example/ml-100k/"


def find_wheel(cache: Path) -> Path:
    """The RecBole wheel: from ``cache`` if present, else downloaded there by pip (a package, not a hub)."""
    found = sorted(cache.glob("recbole-1.2.1-*.whl"))
    if found:
        return found[0]
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", RECBOLE, "-d", str(cache)],
        check=True,
    )
    found = sorted(cache.glob("recbole-1.2.1-*.whl"))
    if not found:
        raise FileNotFoundError(f"pip did not leave a recbole 1.2.1 wheel in {cache}")
    return found[0]


def _read_atomic(text: str) -> list[dict[str, str]]:
    reader = csv.reader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE)
    header = [h.split(":")[0] for h in next(reader)]
    return [dict(zip(header, row, strict=False)) for row in reader if row]


def load_from_wheel(wheel: Path) -> Dataset:
    with zipfile.ZipFile(wheel) as zf:
        inter_text = zf.read(_PREFIX + "ml-100k.inter").decode("utf-8")
        item_text = zf.read(_PREFIX + "ml-100k.item").decode("latin-1")
    interactions = [
        Interaction(r["user_id"], r["item_id"], float(r["rating"]), float(r["timestamp"]))
        for r in _read_atomic(inter_text)
    ]
    ratings: dict[str, list[float]] = defaultdict(list)
    for x in interactions:
        assert x.rating is not None
        ratings[x.item_id].append(x.rating)
    items = []
    for r in _read_atomic(item_text):
        year = r.get("release_year", "") or ""
        title = r["movie_title"].strip()
        scores = ratings.get(r["item_id"], [])
        items.append(
            Item(
                item_id=r["item_id"],
                title=f"{title} ({year})" if year else title,
                year=year,
                genres=(r.get("class") or "").split(),
                average_rating=round(sum(scores) / len(scores), 1) if scores else None,
                rating_count=len(scores),
            )
        )
    items.sort(key=lambda it: int(it.item_id))
    return Dataset(
        name="ml-100k",
        domain="movies",
        catalog=Catalog(items),
        interactions=interactions,
        info={"source": f"MovieLens-100K via the {RECBOLE} wheel ({wheel.name})"},
    )


def build(out: Path, wheel: Path | None = None, cache: Path | None = None) -> Dataset:
    if wheel is None:
        wheel = find_wheel(cache or Path(tempfile.gettempdir()) / "r2ec-wheels")
    dataset = load_from_wheel(wheel)
    dataset.save(out)
    return dataset
