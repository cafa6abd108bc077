"""Ranking metrics with one relevant item (IDCG = 1), reference §4."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

KS = (5, 10, 20)


def hit_at(rank: int | None, k: int) -> float:
    """``rank`` is 0-based; ``None`` means the target is not ranked (excluded or beyond the list)."""
    return 1.0 if rank is not None and rank < k else 0.0


def ndcg_at(rank: int | None, k: int) -> float:
    return 1.0 / math.log2(rank + 2) if rank is not None and rank < k else 0.0


def summarize(ranks: Iterable[int | None], ks: Sequence[int] = KS) -> dict[str, float]:
    ranks = list(ranks)
    n = max(1, len(ranks))
    result: dict[str, float] = {}
    for k in ks:
        result[f"hit@{k}"] = sum(hit_at(r, k) for r in ranks) / n
        result[f"ndcg@{k}"] = sum(ndcg_at(r, k) for r in ranks) / n
    return result
