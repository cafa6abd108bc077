"""MostPopular: rank items by how often they occur in the training interactions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from model_export.baselines import rank_from_scores, training_sequences
from model_export.data.splits import Sample, Split
from r2ec.catalog import Catalog, Event
from r2ec.exclusion import Mask


class MostPopular:
    def __init__(self, catalog: Catalog, window: int = 20, mask: Mask = "window"):
        self.catalog = catalog
        self.window = window
        self.mask: Mask = mask
        self.counts = np.zeros(len(catalog), dtype=np.float64)

    def fit(self, timelines: Mapping[str, Sequence[Event]], splits: Mapping[Split, Sequence[Sample]]) -> MostPopular:
        for events in training_sequences(timelines, splits).values():
            for e in events:
                self.counts[self.catalog.row_of[e.item_id]] += 1
        return self

    def rank(self, sample: Sample) -> int | None:
        return rank_from_scores(self.counts, self.catalog, sample, self.window, self.mask)
