"""How far can one user vector go in a bundle's item space? (the recommendation head's ceiling, no LLM run)

python scripts/item_space_ceiling.py --bundle B --data data/ml-100k [--vectors V.npy] [--limit N]

The served ranking is the cosine of one user vector against the bundle's item vectors. For each leave-one-out test
user (all seen items masked, full ranking, the evaluator's protocol) this builds the user vector a model *could*
write from what its prompt shows, the evidence candidates of the bundle's table, and ranks with it:

* ``top-n centroid``: the normalised, score-weighted mean of the item vectors of the top n candidates (n = 1 is
  the vector of the strongest candidate itself: the "Best match" a trace ends on);
* ``candidates first``: the top n candidates in the table's order, then the rest by their centroid (not one
  vector: what ranking the prompt's evidence list as it stands would give, for comparison).

If a centroid scores far below ranking its own candidates first, the item space does not put a user's candidates
near each other, and no user vector, however well trained, ranks them together: the item tower is the limit.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from model_export.data.format import Dataset
from model_export.data.splits import leave_one_out, select_samples
from r2ec.bundle import load_bundle
from r2ec.evidence import Transitions
from r2ec.exclusion import excluded_rows
from r2ec.metrics import summarize
from r2ec.prompts import history_window


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--vectors", type=Path, help="Item vectors to use instead of the bundle's (.npy, catalog order).")
    ap.add_argument("--limit", type=int, default=None, help="Test users (default: all).")
    ap.add_argument("--sizes", default="1,3,8,50")
    args = ap.parse_args()
    bundle = load_bundle(args.bundle)
    vectors = np.load(args.vectors if args.vectors else args.bundle / "item_vectors.npy").astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    table = Transitions.load(args.bundle / "evidence.npz")
    data = Dataset.load(args.data)
    catalog, templates = data.catalog, bundle.templates
    test = select_samples(leave_one_out(data.timelines(), templates.window_size)["test"], args.limit)
    pairs = vectors @ vectors.T
    upper = pairs[np.triu_indices(len(vectors), 1)]
    print(f"item vectors: {len(vectors)}, pairwise cosine mean {upper.mean():.3f} (std {upper.std():.3f})\n")
    print("| candidates n | top-n centroid NDCG@10 | Hit@10 | candidates first NDCG@10 | Hit@10 |")
    print("|---|---|---|---|---|")
    for n in (int(x) for x in args.sizes.split(",")):
        ranks: dict[str, list[int | None]] = {"centroid": [], "first": []}
        for s in test:
            window_events = history_window(s.history, templates)
            window = [catalog.row_of[e.item_id] for e in window_events]
            masked = excluded_rows(catalog, window_events, s.seen, "seen")
            found = table.candidates(window, masked, n=n)
            target = catalog.row_of[s.target.item_id]
            if not found:
                for v in ranks.values():
                    v.append(None)
                continue
            rows = [c.row for c in found]
            weights = np.array([c.score for c in found], dtype=np.float32)
            user = vectors[rows].T @ (weights / weights.sum())
            user /= np.linalg.norm(user)
            for name in ranks:
                scores = vectors @ user
                if name == "first":
                    scores[rows] = 10.0 + weights / weights.max()
                scores[masked] = -np.inf
                rank = int(np.sum(scores > scores[target]))
                ranks[name].append(rank if rank < 20 and np.isfinite(scores[target]) else None)
        c, f = summarize(ranks["centroid"]), summarize(ranks["first"])
        print(f"| {n} | {c['ndcg@10']:.4f} | {c['hit@10']:.4f} | {f['ndcg@10']:.4f} | {f['hit@10']:.4f} |")


if __name__ == "__main__":
    main()
