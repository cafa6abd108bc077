"""Classical baselines on the same protocol, exclusion and metrics as the LLM: MostPopular, ItemKNN, Transitions (the
evidence table alone) and SASRec."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from model_export.data.splits import Sample, Split
from r2ec.catalog import Catalog, Event
from r2ec.exclusion import Mask, excluded_rows
from r2ec.metrics import KS
from r2ec.scoring import target_rank_and_probability


def training_sequences(
    timelines: Mapping[str, Sequence[Event]], splits: Mapping[Split, Sequence[Sample]]
) -> dict[str, list[Event]]:
    """Per user, the events a model may learn from: up to and including their last train target."""
    last: dict[str, int] = {}
    for s in splits["train"]:
        last[s.user_id] = max(last.get(s.user_id, 0), s.position)
    return {u: list(timelines[u][: p + 1]) for u, p in last.items()}


def sample_exclusion(catalog: Catalog, sample: Sample, window: int, mask: Mask) -> list[int]:
    """Rows masked for ``sample``: the shared rule of ``r2ec.exclusion`` over its window and seen items."""
    return excluded_rows(catalog, sample.history[-window:] if window > 0 else (), sample.seen, mask)


def rank_from_scores(
    scores: np.ndarray, catalog: Catalog, sample: Sample, window: int, mask: Mask = "window", k: int = max(KS)
) -> int | None:
    """0-based rank of the target among non-masked items, or None beyond ``k`` / masked.

    Ties are broken by catalog row, as ``r2ec.scoring.Ranker`` does.
    """
    excluded = sample_exclusion(catalog, sample, window, mask)
    target = catalog.row_of[sample.target.item_id]
    if target in set(excluded):
        return None
    rank, _ = target_rank_and_probability(scores, target, excluded, tau=1.0)
    return rank if rank < k else None
