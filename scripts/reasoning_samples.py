"""Read an evaluation's per-sample record (``results/eval-....samples.jsonl``, written by ``r2ec evaluate``).

python scripts/reasoning_samples.py results/eval-....samples.jsonl --data data/ml-100k [--users 5] [--seed 0]

Prints NDCG@10 / Hit@10 split by how the reasoning ended (``<answer>``, an extra stop, concluded, the budget),
then the reasoning of ``--users`` random test users (seed ``--seed``) with their history tail, target and its
rank, as markdown.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from model_export.data.format import Dataset
from model_export.data.splits import leave_one_out
from r2ec.metrics import summarize


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("samples", type=Path)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--users", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rows = [json.loads(line) for line in args.samples.read_text(encoding="utf-8").splitlines() if line.strip()]
    by_reason: dict[str, list[dict]] = {}
    for r in rows:
        by_reason.setdefault(str(r["finish_reason"]), []).append(r)
    print("| reasoning ended by | samples | Hit@10 | NDCG@10 |\n|---|---|---|---|")
    for reason, group in sorted(by_reason.items(), key=lambda kv: -len(kv[1])):
        m = summarize([r["rank"] for r in group])
        print(f"| {reason} | {len(group)} | {m['hit@10']:.4f} | {m['ndcg@10']:.4f} |")
    print()
    ds = Dataset.load(args.data)
    tests = {s.user_id: s for s in leave_one_out(ds.timelines(), 20)["test"]}
    for r in random.Random(args.seed).sample(rows, min(args.users, len(rows))):
        s = tests[r["user_id"]]
        tail = "; ".join(f"{ds.catalog.get(e.item_id).title} ({e.rating:g})" for e in s.history[-5:])
        rank = "not in the top 20" if r["rank"] is None else f"rank {r['rank'] + 1}"
        target = ds.catalog.get(r["target"]).title
        print(f"**User {r['user_id']}** — last 5 of {len(s.history)} history films: {tail}. ", end="")
        print(f"Target: *{target}* ({rank}); {r['tokens']} tokens, ended by {r['finish_reason']}.\n")
        print("```\n" + (r["reasoning"] or "").strip() + "\n```\n")


if __name__ == "__main__":
    main()
