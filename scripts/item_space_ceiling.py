"""How far can one user vector go in a bundle's item space? (the recommendation head's ceiling, no LLM run)

python scripts/item_space_ceiling.py --bundle B --data data/ml-100k [--vectors V.npy] [--limit N]

The served ranking is the cosine of one user vector against the bundle's item vectors. For each leave-one-out test
user (all seen items masked, full ranking, the evaluator's protocol) this builds the user vector a model *could*
write from what its prompt shows, the evidence candidates of the bundle's table, and ranks with it:

* ``top-n centroid``: the normalised, score-weighted mean of the item vectors of the top n candidates (n = 1 is
  the vector of the strongest candidate itself: the "Best match" a trace ends on);
* ``candidates first``: the top n candidates in the table's order, then the rest by their centroid (not one
  vector: what ranking the prompt's evidence list as it stands would give, for comparison).

* ``optimised``: the unit vector that minimises the SFT stage's distillation loss toward the top n candidates
  (cross-entropy of their score-normalised weights against the softmax of cosine / tau over every unmasked item,
  tau from the reference), found per user by gradient descent from the centroid. This is the best the
  recommendation head's own training objective can ask of a user vector in this item space; unlike a centroid, it
  may use every small difference between nearly parallel item vectors.

If the optimised vector scores far below ranking its own candidates first, the item space does not let one
vector rank a user's candidates together, and no user vector, however well trained, does: the item tower is the
limit. If it scores far above the centroids, the space allows it and the user side is what falls short.
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
from r2ec.scoring import TAU, target_rank_and_probability


def optimise(
    vectors: np.ndarray,
    start: np.ndarray,
    teacher: np.ndarray,
    allowed: np.ndarray,
    steps: int,
    tau: float = TAU,
) -> np.ndarray:
    """Unit vectors (one row per user) minimising cross-entropy(teacher, softmax(cos / tau) over ``allowed``),
    by Adam on the unnormalised vector from ``start``. ``teacher`` rows sum to 1 over allowed items."""
    u = start.astype(np.float64).copy()
    m, v = np.zeros_like(u), np.zeros_like(u)
    items = vectors.astype(np.float64)
    for t in range(1, steps + 1):
        norm = np.linalg.norm(u, axis=1, keepdims=True)
        unit = u / norm
        logits = np.where(allowed, unit @ items.T / tau, -np.inf)
        logits -= logits.max(axis=1, keepdims=True)
        q = np.exp(logits)
        q /= q.sum(axis=1, keepdims=True)
        grad_unit = ((q - teacher) / tau) @ items
        # through the normalisation: the radial part does not change a cosine
        grad = (grad_unit - unit * np.sum(grad_unit * unit, axis=1, keepdims=True)) / norm
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad**2
        u -= 0.01 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    return (u / np.linalg.norm(u, axis=1, keepdims=True)).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--vectors", type=Path, help="Item vectors to use instead of the bundle's (.npy, catalog order).")
    ap.add_argument("--limit", type=int, default=None, help="Test users (default: all).")
    ap.add_argument("--sizes", default="1,3,8,50")
    ap.add_argument("--steps", type=int, default=300, help="Gradient steps of the optimised vector (0: skip it).")
    ap.add_argument(
        "--tau", type=float, default=TAU, help="Temperature of the optimised vector's softmax (the reference's 0.02)."
    )
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
    print(
        "| candidates n | top-n centroid NDCG@10 | Hit@10 | optimised NDCG@10 | Hit@10 "
        "| candidates first NDCG@10 | Hit@10 |"
    )
    print("|---|---|---|---|---|---|---|")
    shapes: list[str] = []
    mean = vectors.mean(axis=0) / np.linalg.norm(vectors.mean(axis=0))  # the direction every item shares
    for n in (int(x) for x in args.sizes.split(",")):
        users: list[np.ndarray] = []
        teachers: list[np.ndarray] = []
        allowed: list[np.ndarray] = []
        targets: list[int] = []
        firsts: list[tuple[list[int], np.ndarray]] = []
        for s in test:
            window_events = history_window(s.history, templates)
            window = [catalog.row_of[e.item_id] for e in window_events]
            masked = excluded_rows(catalog, window_events, s.seen, "seen")
            found = table.candidates(window, masked, n=n)
            if not found:
                continue  # counted as a miss below (no vector to rank with)
            rows = [c.row for c in found]
            weights = np.array([c.score for c in found], dtype=np.float32)
            user = vectors[rows].T @ (weights / weights.sum())
            users.append(user / np.linalg.norm(user))
            teacher = np.zeros(len(vectors), dtype=np.float64)
            teacher[rows] = weights / weights.sum()
            teachers.append(teacher)
            ok = np.ones(len(vectors), dtype=bool)
            ok[list(masked)] = False
            allowed.append(ok)
            targets.append(catalog.row_of[s.target.item_id])
            firsts.append((rows, weights))
        start = np.stack(users)
        mask = np.stack(allowed)
        found_vectors = {"centroid": start}
        if args.steps > 0:
            found_vectors["optimised"] = optimise(vectors, start, np.stack(teachers), mask, args.steps, args.tau)
            opt = found_vectors["optimised"]
            shapes.append(
                f"n {n}: optimised vs centroid cosine {np.mean(np.sum(opt * start, axis=1)):.3f}, "
                f"vs the items' mean direction {np.mean(opt @ mean):.3f} (centroid: {np.mean(start @ mean):.3f})"
            )
        misses = len(test) - len(targets)
        results: dict[str, dict[str, float]] = {}
        for name in [*found_vectors, "first"]:
            ranks: list[int | None] = [None] * misses
            scores_all = vectors @ found_vectors["centroid" if name == "first" else name].T
            for i, target in enumerate(targets):
                scores = scores_all[:, i].copy()
                if name == "first":
                    rows, weights = firsts[i]
                    scores[rows] = 10.0 + weights / weights.max()
                rank, _ = target_rank_and_probability(scores, target, np.flatnonzero(~mask[i]))
                ranks.append(rank if rank < 20 else None)
            results[name] = summarize(ranks)
        c, f = results["centroid"], results["first"]
        o = results.get("optimised")
        cells = f"{o['ndcg@10']:.4f} | {o['hit@10']:.4f}" if o else "- | -"
        print(f"| {n} | {c['ndcg@10']:.4f} | {c['hit@10']:.4f} | {cells} | {f['ndcg@10']:.4f} | {f['hit@10']:.4f} |")
    print("\n" + "\n".join(shapes))


if __name__ == "__main__":
    main()
