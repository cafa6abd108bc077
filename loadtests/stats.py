"""Reading locust's CSV output (kept apart from the locustfile: importing locust monkey-patches the process)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any


def summary_from_csv(prefix: Path) -> dict[str, dict[str, float]]:
    """Per request name: requests, failures, median/p95/p99 ms and requests/s, from locust's *_stats.csv."""
    import csv

    def num(value: str | None) -> float:
        try:
            return float(value or 0)
        except ValueError:  # locust writes N/A where nothing completed
            return 0.0

    out: dict[str, dict[str, float]] = {}
    with Path(f"{prefix}_stats.csv").open() as f:
        for row in csv.DictReader(f):
            out[row["Name"]] = {
                "requests": num(row["Request Count"]),
                "failures": num(row["Failure Count"]),
                "p50_ms": num(row["50%"]),
                "p95_ms": num(row["95%"]),
                "p99_ms": num(row["99%"]),
                "rps": num(row["Requests/s"]),
            }
    return out


def load_histories(data_dir: Path, window: int, limit: int = 2000, seed: int = 0) -> list[list[dict[str, Any]]]:
    """Real users' histories: for random (user, position) pairs, the ``window`` events before that position."""
    import csv

    by_user: dict[str, list[tuple[float, str, float]]] = {}
    with (data_dir / "interactions.csv").open() as f:
        for row in csv.DictReader(f):
            by_user.setdefault(row["user_id"], []).append(
                (float(row["timestamp"]), row["item_id"], float(row["rating"] or 5))
            )
    rng = random.Random(seed)
    users = sorted(by_user)
    out = []
    for _ in range(limit):
        events_ = sorted(by_user[rng.choice(users)])
        if len(events_) < 2:
            continue
        end = rng.randrange(1, len(events_))
        out.append([{"item_id": i, "rating": r, "timestamp": t} for t, i, r in events_[max(0, end - window) : end]])
    return out
