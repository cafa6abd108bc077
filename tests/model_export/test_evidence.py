"""The evidence builder: moves within the horizon, normalised strength, and a training sample without its future."""

from __future__ import annotations

import numpy as np

from model_export.data.splits import leave_one_out
from model_export.evidence import TransitionCounts
from r2ec.catalog import Catalog, Event, Item


def test_moves_count_one_over_the_gap_within_the_horizon():
    counts = TransitionCounts(4, {"u": [0, 1, 2, 3]}, horizon=2)
    expected = np.zeros((4, 4))
    expected[0, 1] = expected[1, 2] = expected[2, 3] = 1.0
    expected[0, 2] = expected[1, 3] = 0.5
    np.testing.assert_allclose(counts.strength, expected)
    assert counts.count.sum() == 5 and counts.users.tolist() == [1, 1, 1, 1]
    table = counts.table()
    # 0 -> 1: 1 / sqrt(out(0) = 1.5 * in(1) = 1)
    assert table.neighbors[0, 0] == 1 and np.isclose(table.weights[0, 0], 1 / np.sqrt(1.5))
    assert table.neighbors[3, 0] == -1  # nothing follows the last item


def _world():
    catalog = Catalog([Item(str(i), f"Film {i}") for i in range(8)])
    rng = np.random.default_rng(0)
    timelines = {}
    for u in range(12):
        items = rng.permutation(8)[:6]
        timelines[f"u{u}"] = [Event(str(i), 100.0 * u + k) for k, i in enumerate(items)]
    return catalog, timelines


def test_a_training_sample_sees_the_table_without_its_own_future():
    """for_sample equals the table counted with the user's timeline cut at the target, on every window row."""
    catalog, timelines = _world()
    splits = leave_one_out(timelines, window=20)
    sequences = {u: [catalog.row_of[e.item_id] for e in tl[:-2]] for u, tl in timelines.items()}
    counts = TransitionCounts(len(catalog), sequences, horizon=3, neighbors=8, recency=0.1)
    table = counts.table()
    checked = 0
    for s in splits["train"]:
        cut = dict(sequences)
        cut[s.user_id] = sequences[s.user_id][: s.position]
        reference = TransitionCounts(len(catalog), cut, horizon=3, neighbors=8, recency=0.1).table()
        mine = counts.for_sample(table, s, catalog)
        for e in s.history:
            r = catalog.row_of[e.item_id]
            np.testing.assert_array_equal(mine.neighbors[r], reference.neighbors[r])
            np.testing.assert_allclose(mine.weights[r], reference.weights[r], rtol=1e-5, atol=1e-7)
            np.testing.assert_array_equal(mine.shared[r], reference.shared[r])
        np.testing.assert_array_equal(mine.users, reference.users)
        checked += 1
    assert checked == len(splits["train"]) > 20
    # valid and test samples: nothing of theirs was counted, so they see the bundle's table itself
    assert all(counts.for_sample(table, s, catalog) is table for s in splits["valid"] + splits["test"])
