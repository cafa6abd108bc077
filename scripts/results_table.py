"""Print docs/results.md's tables from the JSON files that `r2ec evaluate` and `r2ec baseline` write.

python scripts/results_table.py results/*.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

KEYS = ["hit@5", "ndcg@5", "hit@10", "ndcg@10", "hit@20", "ndcg@20"]


def label(path: Path, data: dict) -> str:
    if "method" in data:
        return data["method"]
    c = data["config"]
    mode = "reasoning" if c["reasoning"] else "no reasoning"
    return f"{c['bundle']} {c.get('bundle_version', '')[:8]} ({mode})"


def main(paths: list[str]) -> None:
    rows = []
    for p in map(Path, paths):
        data = json.loads(p.read_text())
        if "metrics" not in data:  # results/ also holds the benchmark and fault records
            continue
        c = data["config"]
        seconds = data.get("seconds") or data.get("timing", {}).get("seconds")
        m = data["metrics"]
        rows.append(
            (
                c["protocol"],
                c.get("mask"),
                f"| {label(p, data)} | {c['protocol']} | {c.get('mask')} | {data['counts']['samples']} | "
                + " | ".join(f"{m[k]:.4f}" for k in KEYS)
                + f" | {seconds:.0f} s |",
            )
        )
    print("| method | protocol | mask | samples | " + " | ".join(k.replace("@", "@") for k in KEYS) + " | wall |")
    print("|---|---|---|---|" + "---|" * (len(KEYS) + 1))
    for _, _, row in sorted(rows):
        print(row)


if __name__ == "__main__":
    main(sys.argv[1:])
