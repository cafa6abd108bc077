import math

import pytest

from r2ec.metrics import hit_at, ndcg_at, summarize


def test_metrics_equal_hand_computed_values():
    ranks = [0, 3, 9, 15, None, 25]  # 0-based ranks of the single relevant item
    m = summarize(ranks)
    assert m["hit@5"] == pytest.approx(2 / 6)
    assert m["hit@10"] == pytest.approx(3 / 6)
    assert m["hit@20"] == pytest.approx(4 / 6)
    assert m["ndcg@5"] == pytest.approx((1 + 1 / math.log2(5)) / 6)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(5) + 1 / math.log2(11)) / 6)
    assert m["ndcg@20"] == pytest.approx((1 + 1 / math.log2(5) + 1 / math.log2(11) + 1 / math.log2(17)) / 6)


def test_boundaries():
    assert hit_at(4, 5) == 1.0 and hit_at(5, 5) == 0.0
    assert ndcg_at(0, 1) == 1.0 and ndcg_at(None, 10) == 0.0
