"""Collaborative evidence for prompts: a "what viewers went on to watch" table that a bundle may carry.

Per catalog row the table holds the items its viewers rated next (within a horizon of ratings), strongest first,
with how many viewers made that move, computed from training interactions only (``model_export.evidence``). With
a template that enables it, the user prompt gains a few numbered candidate lines ("N viewers of [a film you
rated] went on to watch [this]") that the reasoning cites. A user's candidates are the items with the largest
transition strength summed over the history window, recent history counting more (``recency``). The same
candidates feed the training traces (``training.traces``) and the distillation teacher, so what the model learns
to cite is exactly what serving shows it; ranked on their own they are the ``transitions`` baseline
(``model_export.baselines``). Imported checkpoints keep the authors' prompt: their templates leave evidence off.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

EVIDENCE_FILE = "evidence.npz"


@dataclass(frozen=True)
class Candidate:
    row: int
    score: float  # recency-weighted transition strength summed over the window
    support: tuple[int, ...]  # window rows it follows, strongest contribution first
    shared: int  # viewers who went from the strongest support item to it


@dataclass
class Transitions:
    neighbors: np.ndarray  # (n_items, m) int32 catalog rows, -1 = none
    weights: np.ndarray  # (n_items, m) float32 normalised transition strength, 0 for none
    shared: np.ndarray  # (n_items, m) int32 viewers who went from the row to the neighbour
    users: np.ndarray  # (n_items,) int32 viewers per item in the training data
    recency: float = 0.0  # a window item k positions before the newest one counts exp(-recency * k)

    def save(self, path: Path) -> None:
        with path.open("wb") as f:
            np.savez(
                f,
                neighbors=self.neighbors,
                weights=self.weights,
                shared=self.shared,
                users=self.users,
                recency=np.float64(self.recency),
            )

    @classmethod
    def load(cls, path: Path) -> Transitions:
        with np.load(path, allow_pickle=False) as z:
            recency = float(z["recency"]) if "recency" in z.files else 0.0
            return cls(z["neighbors"], z["weights"], z["shared"], z["users"], recency)

    def with_rows(
        self, rows: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]], users: np.ndarray | None = None
    ) -> Transitions:
        """A copy whose given rows are replaced by (neighbors, weights, shared) of the same width."""
        neighbors, weights, shared = self.neighbors.copy(), self.weights.copy(), self.shared.copy()
        for r, (nb, w, sh) in rows.items():
            neighbors[r], weights[r], shared[r] = nb, w, sh
        return Transitions(neighbors, weights, shared, self.users if users is None else users, self.recency)

    def position_weights(self, n: int) -> np.ndarray:
        """Weight of each of ``n`` window positions, oldest first (the newest counts 1)."""
        return np.exp(-self.recency * np.arange(n - 1, -1, -1, dtype=np.float64))

    def _window(self, window: Sequence[int]) -> tuple[list[int], np.ndarray]:
        """Distinct window rows (a repeated item counts at its latest position) and their weights."""
        latest = {int(r): k for k, r in enumerate(window)}
        weights = self.position_weights(len(window))
        rows = sorted(latest, key=latest.__getitem__)
        return rows, np.array([weights[latest[r]] for r in rows], dtype=np.float64)

    def _contributions(self, window: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every (window row, neighbour) pair: source rows, neighbour rows, weighted strength, viewers."""
        rows, weights = self._window(window)
        if not rows:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, np.zeros(0), empty
        nb = self.neighbors[rows]
        keep = nb >= 0
        src = np.broadcast_to(np.asarray(rows, dtype=np.int64)[:, None], nb.shape)[keep]
        strength = (weights[:, None] * self.weights[rows].astype(np.float64))[keep]
        return src, nb[keep].astype(np.int64), strength, self.shared[rows][keep].astype(np.int64)

    def scores(self, window: Sequence[int]) -> np.ndarray:
        """Summed, recency-weighted transition strength of every catalog row from the window (0 = no evidence)."""
        _, dst, strength, _ = self._contributions(window)
        return np.bincount(dst, weights=strength, minlength=self.neighbors.shape[0]).astype(np.float64)

    def candidates(self, window: Sequence[int], exclude: Sequence[int] = (), n: int = 5) -> list[Candidate]:
        """The ``n`` best-scored rows with any evidence, none of ``exclude`` or the window; ties by row."""
        src, dst, strength, shared = self._contributions(window)
        score = np.bincount(dst, weights=strength, minlength=self.neighbors.shape[0]).astype(np.float64)
        banned = np.fromiter({int(r) for r in exclude} | {int(r) for r in window}, dtype=np.int64)
        if banned.size:
            score[banned] = 0.0
        found = np.flatnonzero(score > 0)
        best = found[np.lexsort((found, -score[found]))][:n]
        out = []
        for r in best.tolist():
            mine = np.flatnonzero(dst == r)
            # strongest contribution first, ties by source row
            order = mine[np.lexsort((src[mine], -strength[mine]))]
            out.append(Candidate(r, float(score[r]), tuple(int(x) for x in src[order]), int(shared[order[0]])))
        return out
