"""Reading locust's CSV output (kept apart from the locustfile: importing locust monkey-patches the process)."""

from __future__ import annotations

from pathlib import Path


def summary_from_csv(prefix: Path) -> dict[str, dict[str, float]]:
    """Per request name: requests, failures, median/p95/p99 ms and requests/s, from locust's *_stats.csv."""
    import csv

    out: dict[str, dict[str, float]] = {}
    with Path(f"{prefix}_stats.csv").open() as f:
        for row in csv.DictReader(f):
            out[row["Name"]] = {
                "requests": float(row["Request Count"]),
                "failures": float(row["Failure Count"]),
                "p50_ms": float(row["50%"] or 0),
                "p95_ms": float(row["95%"] or 0),
                "p99_ms": float(row["99%"] or 0),
                "rps": float(row["Requests/s"] or 0),
            }
    return out
