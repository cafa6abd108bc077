"""The evidence table: recency-weighted candidates from the window, exclusions, support and persistence."""

from __future__ import annotations

import math

import numpy as np

from r2ec.evidence import Transitions


def _table(recency: float = 0.0) -> Transitions:
    # rows 0..4; 0 -> {2: 0.5, 3: 0.2}, 1 -> {3: 0.4, 4: 0.1}, 2 -> {0: 0.9}
    neighbors = np.array([[2, 3], [3, 4], [0, -1], [-1, -1], [-1, -1]], dtype=np.int32)
    weights = np.array([[0.5, 0.2], [0.4, 0.1], [0.9, 0.0], [0, 0], [0, 0]], dtype=np.float32)
    shared = np.array([[7, 3], [5, 1], [9, 0], [0, 0], [0, 0]], dtype=np.int32)
    return Transitions(neighbors, weights, shared, np.array([10, 8, 12, 6, 2], dtype=np.int32), recency)


def test_scores_sum_the_window_and_candidates_rank_them():
    t = _table()
    np.testing.assert_allclose(t.scores([0, 1]), [0, 0, 0.5, 0.6, 0.1], rtol=1e-6)
    found = t.candidates([0, 1], n=5)
    assert [c.row for c in found] == [3, 2, 4]  # nothing without evidence, the window never
    top = found[0]
    assert top.support == (1, 0) and top.shared == 5  # 1 -> 3 (0.4) is stronger than 0 -> 3 (0.2)
    assert math.isclose(top.score, 0.6, rel_tol=1e-6)


def test_recent_history_counts_more():
    t = _table(recency=1.0)
    # window [1, 0]: 0 is the newest (weight 1), 1 one step older (weight e^-1)
    np.testing.assert_allclose(t.scores([1, 0])[[2, 3]], [0.5, 0.2 + 0.4 / math.e], rtol=1e-6)
    assert [c.row for c in t.candidates([1, 0], n=2)] == [2, 3]
    assert [c.row for c in t.candidates([0, 1], n=2)] == [3, 2]  # the order of the window decides
    # a repeated item counts once, at its latest position
    np.testing.assert_allclose(t.scores([0, 1, 0]), t.scores([1, 0]), rtol=1e-6)


def test_exclusions_and_ties():
    t = _table()
    assert [c.row for c in t.candidates([0, 1], exclude=[3], n=5)] == [2, 4]
    neighbors = np.array([[2, 1], [-1, -1], [-1, -1]], dtype=np.int32)
    tied = Transitions(neighbors, np.full((3, 2), 0.3, np.float32), np.ones((3, 2), np.int32), np.ones(3, np.int32))
    assert [c.row for c in tied.candidates([0], n=2)] == [1, 2]  # equal scores: lower row first


def test_save_load_and_row_replacement(tmp_path):
    t = _table(recency=0.25)
    t.save(tmp_path / "e.npz")
    back = Transitions.load(tmp_path / "e.npz")
    assert back.recency == 0.25
    for name in ("neighbors", "weights", "shared", "users"):
        np.testing.assert_array_equal(getattr(back, name), getattr(t, name))
    swapped = t.with_rows({0: (np.array([4, -1]), np.array([1.0, 0.0]), np.array([2, 0]))})
    assert [c.row for c in swapped.candidates([0], n=3)] == [4]
    assert [c.row for c in t.candidates([0], n=3)] == [2, 3]  # the original is untouched
