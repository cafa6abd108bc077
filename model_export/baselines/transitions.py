"""Transitions: the evidence table a bundle carries, ranked on its own (no LLM).

A user's score for an item is the recency-weighted transition strength from the history window to it
(``r2ec.evidence.Transitions.scores``): what the viewers of the user's recent films went on to watch next. It is
the collaborative teacher of the trained demo and the candidates its prompt shows, so it says how much the LLM
adds to (or loses from) the evidence it is given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from model_export.baselines import rank_from_scores, training_sequences
from model_export.data.splits import Sample, Split
from model_export.evidence import TransitionCounts
from r2ec.catalog import Catalog, Event
from r2ec.evidence import Transitions
from r2ec.exclusion import Mask


class TransitionsBaseline:
    def __init__(self, catalog: Catalog, window: int = 20, mask: Mask = "window"):
        self.catalog = catalog
        self.window = window
        self.mask: Mask = mask
        self.table: Transitions | None = None

    def fit(
        self, timelines: Mapping[str, Sequence[Event]], splits: Mapping[Split, Sequence[Sample]]
    ) -> TransitionsBaseline:
        self.table = TransitionCounts.from_sequences(self.catalog, training_sequences(timelines, splits)).table()
        return self

    def rank(self, sample: Sample) -> int | None:
        assert self.table is not None, "fit first"
        rows = [self.catalog.row_of[e.item_id] for e in sample.history[-self.window :]] if self.window > 0 else []
        return rank_from_scores(self.table.scores(rows), self.catalog, sample, self.window, self.mask)
