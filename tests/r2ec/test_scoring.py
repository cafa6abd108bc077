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


def test_flat_product_path_equals_the_faiss_search(vectors):
    """The flat ranker computes the catalog product once; FAISS's own flat search must agree with it."""
    index = build_index(vectors, IndexSpec())
    fast = Ranker(vectors, index, tau=0.02)
    assert fast.exact_by_product
    searched = Ranker(vectors, index, tau=0.02)
    searched.exact_by_product = False
    rng = np.random.default_rng(2)
    for _ in range(20):
        q = rng.normal(size=32)
        exclude = rng.choice(300, size=7, replace=False).tolist()
        a, b = fast.rank(q, 20, exclude), searched.rank(q, 20, exclude)
        assert a.rows.tolist() == b.rows.tolist()
        np.testing.assert_allclose(a.probabilities, b.probabilities, rtol=1e-5)
    assert (
        fast.rank(vectors[0], 400, list(range(295))).rows.tolist() == list(range(295, 300))
        or len(fast.rank(vectors[0], 400, list(range(295))).rows) == 5
    )


def test_searched_indexes_normalise_over_their_own_pool_within_a_bound():
    """Beyond NORMALISER_POOL items the softmax mass at tau 0.02 is negligible: a searched index's probabilities
    (no catalog product) match the exact ones on a catalog four times the pool."""
    from r2ec.scoring import NORMALISER_POOL

    rng = np.random.default_rng(3)
    big = l2_normalize(rng.normal(size=(4 * NORMALISER_POOL, 64)))
    index = build_index(big, IndexSpec())
    exact = Ranker(big, index, tau=0.02)
    searched = Ranker(big, index, tau=0.02)
    searched.exact_by_product = False  # the path IVF, HNSW and GPU indexes take
    for _ in range(10):
        q = rng.normal(size=64)
        a, b = exact.rank(q, 10, [1, 2, 3]), searched.rank(q, 10, [1, 2, 3])
        assert a.rows.tolist() == b.rows.tolist()
        np.testing.assert_allclose(b.probabilities, a.probabilities, rtol=1e-3)
        assert np.all(b.probabilities >= a.probabilities)  # a smaller normaliser never lowers a probability
