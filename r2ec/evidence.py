"""Collaborative evidence for prompts: an item-item co-interaction table that a bundle may carry.

The table holds, per catalog row, its nearest items by co-interaction cosine and how many users interacted with
both, computed from training interactions only (``model_export``). With a template that enables it, the user
prompt gains a few candidate lines ("viewers of these went on to watch ...") that the reasoning can cite. The
same candidates feed the training traces (``training.traces``), so what the model learns to cite is exactly what
serving shows it. Imported checkpoints keep the authors' prompt: their templates leave evidence off.
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
    score: float  # summed cosine over the window items that list it
    support: tuple[int, ...]  # window rows it came from, strongest first
    shared: int  # users who interacted with both it and its strongest support item


@dataclass
class CoInteractions:
    neighbors: np.ndarray  # (n_items, m) int32 catalog rows, -1 = none
    weights: np.ndarray  # (n_items, m) float32 cosine
    shared: np.ndarray  # (n_items, m) int32 users in common
    users: np.ndarray  # (n_items,) int32 users per item in the training data

    @classmethod
    def from_counts(cls, co: np.ndarray, m: int = 50) -> CoInteractions:
        """From a dense co-count matrix (diagonal = users per item): top ``m`` neighbours by cosine."""
        users = np.diag(co).astype(np.int64)
        norm = np.sqrt(np.outer(users, users)) + 1e-9
        sim = (co / norm).astype(np.float32)
        np.fill_diagonal(sim, -1.0)
        m = min(m, max(1, sim.shape[1] - 1))
        top = np.argsort(-sim, axis=1, kind="stable")[:, :m]
        rows = np.arange(sim.shape[0])[:, None]
        weights = sim[rows, top]
        neighbors = np.where(weights > 0, top, -1).astype(np.int32)
        return cls(
            neighbors, np.maximum(weights, 0).astype(np.float32), co[rows, top].astype(np.int32), users.astype(np.int32)
        )

    def save(self, path: Path) -> None:
        with path.open("wb") as f:
            np.savez(f, neighbors=self.neighbors, weights=self.weights, shared=self.shared, users=self.users)

    @classmethod
    def load(cls, path: Path) -> CoInteractions:
        with np.load(path, allow_pickle=False) as z:
            return cls(z["neighbors"], z["weights"], z["shared"], z["users"])

    def candidates(self, window: Sequence[int], exclude: Sequence[int] = (), n: int = 5) -> list[Candidate]:
        """The ``n`` items with the largest summed similarity to the window rows, none of ``exclude`` or the window."""
        banned = set(int(r) for r in exclude) | set(int(r) for r in window)
        score: dict[int, float] = {}
        support: dict[int, list[tuple[float, int, int]]] = {}
        for src in dict.fromkeys(int(r) for r in window):
            for nb, w, sh in zip(self.neighbors[src], self.weights[src], self.shared[src], strict=True):
                nb = int(nb)
                if nb < 0 or nb in banned:
                    continue
                score[nb] = score.get(nb, 0.0) + float(w)
                support.setdefault(nb, []).append((float(w), src, int(sh)))
        best = sorted(score, key=lambda r: (-score[r], r))[:n]
        out = []
        for r in best:
            sup = sorted(support[r], key=lambda t: (-t[0], t[1]))
            out.append(Candidate(r, score[r], tuple(s for _, s, _ in sup), sup[0][2]))
        return out
