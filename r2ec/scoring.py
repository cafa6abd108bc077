"""Scoring: cosine / tau over the catalog, history excluded, optional candidate set (reference §2).

``Ranker.rank`` is the one ranking function: the service, the offline evaluator and training rewards call it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from r2ec.pooling import l2_normalize

if TYPE_CHECKING:  # the index is built elsewhere (r2ec.index); scoring's pure-numpy helpers need no FAISS
    import faiss

TAU = 0.02
# Searched indexes (approximate, or on a GPU) normalise the softmax over this many of their own best results
# instead of a full catalog product that would undo their speed-up: at tau 0.02 a cosine 0.1 below the best is
# a factor e^5 down, so the mass beyond the top 1,024 is negligible (tests/r2ec/test_scoring.py bounds it).
NORMALISER_POOL = 1024


@dataclass(frozen=True)
class Ranked:
    rows: np.ndarray  # catalog rows, best first
    cosines: np.ndarray
    probabilities: np.ndarray  # softmax(cos / tau) over every rankable item, not just the top k


def _log_normalizer(logits: np.ndarray) -> float:
    top = float(logits.max())
    return top + float(np.log(np.exp(logits - top).sum()))


class Ranker:
    def __init__(self, vectors: np.ndarray, index: faiss.Index, tau: float = TAU):
        if index.ntotal != vectors.shape[0]:
            raise ValueError(f"index holds {index.ntotal} vectors, matrix {vectors.shape[0]}")
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.index = index
        self.tau = tau
        # Flat inner product on the CPU is this matrix product; GPU and approximate indexes are searched.
        self.exact_by_product = type(index).__name__ == "IndexFlatIP"

    @property
    def size(self) -> int:
        return int(self.vectors.shape[0])

    def rank(
        self,
        query: np.ndarray,
        k: int,
        exclude: Sequence[int] = (),
        candidates: Sequence[int] | None = None,
    ) -> Ranked:
        """Top ``k`` rows for one query vector (normalised here). Excluded rows never appear."""
        q = l2_normalize(np.asarray(query, dtype=np.float32).reshape(1, -1))
        excluded = set(int(r) for r in exclude)
        if candidates is not None:
            rows = np.array(sorted(set(int(c) for c in candidates) - excluded), dtype=np.int64)
            if rows.size == 0:
                empty = np.zeros(0, dtype=np.float32)
                return Ranked(rows, empty, empty)
            cos = self.vectors[rows] @ q[0]
            log_z = _log_normalizer(cos / self.tau)
            order = np.lexsort((rows, -cos))[:k]
            return Ranked(rows[order], cos[order], np.exp(cos[order] / self.tau - log_z))

        if self.exact_by_product:
            all_cos = self.vectors @ q[0]  # the exact normaliser needs every score once
            # A flat inner-product index computes exactly this product: rank from it instead of a second pass.
            logits = all_cos / self.tau
            if excluded:
                logits[np.fromiter(excluded, dtype=np.int64)] = -np.inf
            log_z = _log_normalizer(logits)
            finite = int(np.isfinite(logits).sum())
            top = min(k, finite)
            if top <= 0:
                empty = np.zeros(0, dtype=np.float32)
                return Ranked(np.zeros(0, dtype=np.int64), empty, empty)
            part = np.argpartition(-logits, top - 1)[:top] if top < len(logits) else np.arange(len(logits))
            order = part[np.lexsort((part, -all_cos[part]))]  # ties by row, as below
            cos = all_cos[order].astype(np.float32)
            return Ranked(order.astype(np.int64), cos, np.exp(cos / self.tau - log_z).astype(np.float32))
        # Over-fetch by the number of excluded rows, then drop them; the pool also gives the normaliser.
        fetch = min(self.size, max(k, NORMALISER_POOL) + len(excluded))
        sims, ids = self.index.search(q, fetch)
        keep = [(float(s), int(i)) for s, i in zip(sims[0], ids[0], strict=True) if i >= 0 and int(i) not in excluded]
        keep.sort(key=lambda pair: (-pair[0], pair[1]))  # deterministic order for ties
        if not keep:
            empty = np.zeros(0, dtype=np.float32)
            return Ranked(np.zeros(0, dtype=np.int64), empty, empty)
        log_z = _log_normalizer(np.array([s for s, _ in keep], dtype=np.float64) / self.tau)
        keep = keep[:k]
        rows = np.array([i for _, i in keep], dtype=np.int64)
        cos = np.array([s for s, _ in keep], dtype=np.float32)
        return Ranked(rows, cos, np.exp(cos / self.tau - log_z).astype(np.float32))


def target_rank_and_probability(
    cosines: np.ndarray, target: int, exclude: Sequence[int] = (), tau: float = TAU
) -> tuple[int, float]:
    """0-based rank of ``target`` among all non-excluded items and its softmax(cos / tau) probability.

    Ties count against the target only for rows before it (the order ``Ranker.rank`` uses). Training rewards
    are computed with this, over the whole catalog, history excluded.
    """
    logits = np.asarray(cosines, dtype=np.float64) / tau
    if len(exclude):
        logits = logits.copy()
        logits[np.asarray(list(exclude), dtype=np.int64)] = -np.inf
    t = logits[target]
    rank = int(np.sum(logits > t)) + int(np.sum(logits[:target] == t))
    return rank, float(np.exp(t - _log_normalizer(logits)))
