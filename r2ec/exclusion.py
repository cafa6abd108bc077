"""Which items a ranking may not return: the one exclusion rule shared by the service, the evaluator, the
baselines and training rewards.

* ``window``: the history window the prompt shows (the paper's rule; on Amazon's sparse data nearly every seen item).
* ``seen``: every item the user interacted with before the target (the recsys convention for leave-one-out on
  MovieLens, where users never re-rate an item; reference §4).
* ``none``: nothing is masked.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

from r2ec.catalog import Catalog, Event

Mask = Literal["seen", "window", "none"]
MASKS: tuple[Mask, ...] = ("seen", "window", "none")


def excluded_items(
    window: Sequence[Event], seen: Iterable[str] = (), mask: Mask = "window", extra: Iterable[str] = ()
) -> set[str]:
    """Item ids to mask: by ``mask`` (``seen`` covers the window too), plus any ``extra`` ids the caller names."""
    if mask not in MASKS:
        raise ValueError(f"unknown mask {mask!r} (seen, window or none)")
    out = set(extra)
    if mask != "none":
        out.update(e.item_id for e in window)
    if mask == "seen":
        out.update(seen)
    return out


def excluded_rows(
    catalog: Catalog,
    window: Sequence[Event],
    seen: Iterable[str] = (),
    mask: Mask = "window",
    extra: Iterable[str] = (),
) -> list[int]:
    """Catalog rows of ``excluded_items``, sorted; ids outside the catalog are ignored (they cannot be ranked)."""
    ids = excluded_items(window, seen, mask, extra)
    return sorted(catalog.row_of[i] for i in ids if i in catalog.row_of)
