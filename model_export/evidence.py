"""Build a bundle's evidence table (``r2ec.evidence``) from a dataset's training interactions only.

A move i -> j is a viewer rating j within ``horizon`` ratings after i, counting 1 / gap (the next rating counts
most); the strength of i -> j is the summed moves over sqrt(moves out of i * moves into j), so that neither a
prolific source nor a blockbuster target dominates. Each row keeps its ``neighbors`` strongest successors.

Training needs one more thing: a training sample's own future must not be evidence for it. The bundle's table
counts every training interaction, a training target among them (and what its viewer watched after it), so
``TransitionCounts.for_sample`` recomputes the window's rows without the user's ratings from the target on. At
serving and evaluation time nothing has to be removed: valid and test targets never count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from model_export.baselines import training_sequences
from model_export.data.format import Dataset
from model_export.data.splits import Protocol, Sample
from model_export.data.splits import split as make_split
from r2ec.catalog import Catalog, Event
from r2ec.evidence import Transitions

HORIZON = 20
NEIGHBORS = 100
RECENCY = 0.1


class TransitionCounts:
    """Dense move counts of the training sequences, kept so that a sample's own future can be taken out."""

    def __init__(
        self,
        n_items: int,
        sequences: Mapping[str, Sequence[int]],
        horizon: int = HORIZON,
        neighbors: int = NEIGHBORS,
        recency: float = RECENCY,
    ):
        self.horizon, self.neighbors, self.recency = horizon, neighbors, recency
        self.sequences = {u: np.asarray(s, dtype=np.int64) for u, s in sequences.items()}
        self.strength = np.zeros((n_items, n_items), dtype=np.float64)
        self.count = np.zeros((n_items, n_items), dtype=np.int32)
        self.users = np.zeros(n_items, dtype=np.int32)
        for seq in self.sequences.values():
            src, dst, weight = self.moves(seq, 0)
            np.add.at(self.strength, (src, dst), weight)
            np.add.at(self.count, (src, dst), 1)
            self.users[np.unique(seq)] += 1
        self.out_sum = self.strength.sum(axis=1)
        self.in_sum = self.strength.sum(axis=0)

    @classmethod
    def from_sequences(cls, catalog: Catalog, sequences: Mapping[str, Sequence[Event]], **kw: Any) -> TransitionCounts:
        rows = {u: [catalog.row_of[e.item_id] for e in seq] for u, seq in sequences.items()}
        return cls(len(catalog), rows, **kw)

    def moves(self, seq: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(source rows, target rows, weights) of the moves of ``seq`` that end at position ``start`` or later."""
        src, dst, weight = [], [], []
        for gap in range(1, self.horizon + 1):
            first = max(start, gap)
            if first >= len(seq):
                break
            src.append(seq[first - gap : len(seq) - gap])
            dst.append(seq[first:])
            weight.append(np.full(len(seq) - first, 1.0 / gap))
        if not src:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, np.zeros(0)
        return np.concatenate(src), np.concatenate(dst), np.concatenate(weight)

    def _top(
        self,
        rows: Sequence[int] | np.ndarray,
        strength: np.ndarray,
        count: np.ndarray,
        out_sum: np.ndarray,
        in_sum: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(neighbors, weights, shared) of the given source rows: their ``neighbors`` strongest successors."""
        denom = np.sqrt(np.outer(out_sum[rows], in_sum))
        w = np.divide(strength, denom, out=np.zeros_like(strength), where=denom > 0)
        m = min(self.neighbors, w.shape[1])
        top = np.argsort(-w, axis=1, kind="stable")[:, :m]
        at = np.arange(len(rows))[:, None]
        weights = w[at, top]
        neighbors = np.where(weights > 0, top, -1).astype(np.int32)
        return neighbors, np.maximum(weights, 0).astype(np.float32), np.where(weights > 0, count[at, top], 0)

    def table(self) -> Transitions:
        """The bundle's table: every training move counted."""
        n, parts = self.strength.shape[0], []
        for start in range(0, n, 1024):  # row blocks: a large catalog's dense temporaries stay bounded
            rows = np.arange(start, min(n, start + 1024))
            parts.append(self._top(rows, self.strength[rows], self.count[rows], self.out_sum, self.in_sum))
        nb, w, sh = (np.concatenate(x) for x in zip(*parts, strict=True))
        return Transitions(nb, w, sh.astype(np.int32), self.users.copy(), self.recency)

    def for_sample(self, table: Transitions, sample: Sample, catalog: Catalog) -> Transitions:
        """``table`` with the window's rows recomputed without the sample user's ratings from its target on
        (a training sample's own target, and what its viewer watched after it, are never its evidence)."""
        seq = self.sequences.get(sample.user_id)
        if seq is None or sample.position >= len(seq):
            return table  # nothing of the target or after it was counted (a valid or test sample)
        src, dst, weight = self.moves(seq, sample.position)
        window = sorted({catalog.row_of[e.item_id] for e in sample.history})
        out_sum = self.out_sum.copy()
        np.subtract.at(out_sum, src, weight)
        in_sum = self.in_sum.copy()
        np.subtract.at(in_sum, dst, weight)
        strength, count = self.strength[window], self.count[window]  # copies
        mine = np.isin(src, window)
        local = np.searchsorted(window, src[mine])
        np.subtract.at(strength, (local, dst[mine]), weight[mine])
        np.subtract.at(count, (local, dst[mine]), 1)
        nb, w, sh = self._top(
            window, np.maximum(strength, 0.0), count, np.maximum(out_sum, 0.0), np.maximum(in_sum, 0.0)
        )
        users = table.users.copy()
        users[np.unique(seq[sample.position :])] -= 1
        return table.with_rows({r: (nb[k], w[k], sh[k]) for k, r in enumerate(window)}, users)

    def info(self) -> dict[str, Any]:
        return {"kind": "transitions", "horizon": self.horizon, "neighbors": self.neighbors, "recency": self.recency}


def build_counts(
    data: Path, catalog: Catalog, protocol: Protocol = "loo", window: int = 20
) -> tuple[TransitionCounts, dict[str, Any]]:
    """Counts from the protocol's training sequences (valid/test targets never count), aligned to ``catalog``."""
    ds = Dataset.load(data)
    missing = set(ds.catalog.row_of) - set(catalog.row_of)
    if missing:
        raise ValueError(f"{len(missing)} dataset items are not in the catalog")
    timelines = ds.timelines()
    sequences = training_sequences(timelines, make_split(timelines, protocol, window))
    counts = TransitionCounts.from_sequences(catalog, sequences)
    return counts, {"dataset": ds.name, "protocol": protocol, "users": len(sequences), **counts.info()}


def build_evidence(
    data: Path, catalog: Catalog, protocol: Protocol = "loo", window: int = 20
) -> tuple[Transitions, dict[str, Any]]:
    """The bundle's table from the protocol's training sequences, and where it came from."""
    counts, info = build_counts(data, catalog, protocol, window)
    return counts.table(), info
