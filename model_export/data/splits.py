"""Evaluation protocols: turn user timelines into (history, target) samples and split them.

* ``temporal`` (the paper's): every interaction at position >= 1 of a user's timeline is a sample with up to
  ``window`` previous events as history; all samples are sorted by target time and split 80/10/10 globally.
* ``loo`` (leave-one-out): per user with >= 3 events, the last is test, the second-last valid, the rest train.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from r2ec.catalog import Event

Protocol = Literal["temporal", "loo"]
Split = Literal["train", "valid", "test"]


@dataclass(frozen=True)
class Sample:
    user_id: str
    position: int  # index of the target in the user's timeline
    history: tuple[Event, ...]  # oldest first, at most ``window`` events
    target: Event
    # Item ids of the user's whole timeline, shared by all of the user's samples; ``seen`` slices it.
    timeline_items: tuple[str, ...] = field(default=(), compare=False, repr=False)

    @property
    def seen(self) -> tuple[str, ...]:
        """Every item the user interacted with before the target (the ``seen`` mask)."""
        return self.timeline_items[: self.position] if self.timeline_items else tuple(e.item_id for e in self.history)

    @property
    def now(self) -> float:
        """Ages in the prompt are measured to the target time (reference §3)."""
        return self.target.timestamp


def samples_of(user_id: str, timeline: Sequence[Event], window: int) -> list[Sample]:
    items = tuple(e.item_id for e in timeline)
    return [
        Sample(user_id, pos, tuple(timeline[max(0, pos - window) : pos]), timeline[pos], items)
        for pos in range(1, len(timeline))
    ]


def temporal_split(
    timelines: Mapping[str, Sequence[Event]], window: int = 20, fractions: tuple[float, float] = (0.8, 0.1)
) -> dict[Split, list[Sample]]:
    samples = [s for user, tl in timelines.items() for s in samples_of(user, tl, window)]
    samples.sort(key=lambda s: (s.target.timestamp, s.user_id, s.position))
    n = len(samples)
    # Rounded down, as the authors' split does (int(), not round()).
    n_train = int(n * fractions[0])
    n_valid = int(n * fractions[1])
    return {
        "train": samples[:n_train],
        "valid": samples[n_train : n_train + n_valid],
        "test": samples[n_train + n_valid :],
    }


def leave_one_out(timelines: Mapping[str, Sequence[Event]], window: int = 20) -> dict[Split, list[Sample]]:
    out: dict[Split, list[Sample]] = {"train": [], "valid": [], "test": []}
    for user in sorted(timelines):
        samples = samples_of(user, timelines[user], window)
        if len(samples) < 2:
            out["train"].extend(samples)
            continue
        out["train"].extend(samples[:-2])
        out["valid"].append(samples[-2])
        out["test"].append(samples[-1])
    return out


def split(timelines: Mapping[str, Sequence[Event]], protocol: Protocol, window: int = 20) -> dict[Split, list[Sample]]:
    if protocol == "temporal":
        return temporal_split(timelines, window)
    if protocol == "loo":
        return leave_one_out(timelines, window)
    raise ValueError(f"unknown protocol {protocol!r} (temporal or loo)")


T = TypeVar("T")


def select_samples(samples: Sequence[T], limit: int | None, seed: int = 0) -> list[T]:
    """A fixed random subset (same for every method given the same split), in the split's order."""
    if limit is None or limit >= len(samples):
        return list(samples)
    keep = sorted(random.Random(seed).sample(range(len(samples)), limit))
    return [samples[i] for i in keep]
