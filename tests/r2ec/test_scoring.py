import numpy as np
import pytest

from r2ec.index import IndexSpec, build_index, recall_at
from r2ec.pooling import l2_normalize
from r2ec.scoring import Ranker


@pytest.fixture(scope="module")
def vectors():
    return l2_normalize(np.random.default_rng(0).normal(size=(300, 32)))


def test_flat_ranking_is_exact_with_exclusion_and_probabilities(vectors):
    ranker = Ranker(vectors, build_index(vectors, IndexSpec()), tau=0.02)
    q = np.random.default_rng(1).normal(size=32)
    exclude = [5, 17, 250]
    got = ranker.rank(q, 10, exclude)
    cos = vectors @ l2_normalize(q[None])[0]
    cos[exclude] = -np.inf
    want = np.argsort(-cos, kind="stable")[:10]
    assert got.rows.tolist() == want.tolist()
    assert not set(exclude) & set(got.rows.tolist())
    logits = cos / 0.02
    p = np.exp(logits - logits.max())
    p /= p.sum()
    np.testing.assert_allclose(got.probabilities, p[want], rtol=1e-4)


def test_candidates_rank_only_among_them(vectors):
    ranker = Ranker(vectors, build_index(vectors, IndexSpec()))
    q = vectors[3]
    got = ranker.rank(q, 5, exclude=[3], candidates=[3, 10, 20, 30])
    assert set(got.rows.tolist()) == {10, 20, 30}
    assert got.probabilities.sum() == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_indexes_have_high_recall(vectors, kind):
    index = build_index(vectors, IndexSpec(kind=kind, nprobe=8))
    assert recall_at(index, vectors, vectors[:50], k=10) > 0.9
