"""python scripts/served_vector_probe.py [N]  (from the repository root; the demo bundle, data/ml-100k)

Probe: served user vectors (the shipped bundle, served defaults, vLLM float32) of the first N LOO test users
(select_samples, seed 0), ranked by plain cosine (the evaluator's), by cosine with both sides centred on the item
mean, and by the user side alone centred. Seen items masked."""

import asyncio
import sys
import time
from pathlib import Path

import numpy as np

from entrypoints.evaluation import _open_recommender
from model_export.data.format import Dataset
from model_export.data.splits import select_samples
from model_export.data.splits import split as make_split
from r2ec.engine.base import GenerationOptions
from r2ec.exclusion import excluded_rows
from r2ec.metrics import summarize
from r2ec.prompts import history_window
from r2ec.scoring import target_rank_and_probability

B = Path.home() / ".cache/r2ec/bundles/demo-smollm2-ml100k"
N = int(sys.argv[1]) if len(sys.argv) > 1 else 200


async def main():
    b, engine, rec = await _open_recommender(B, "vllm", "float32", 24, None, None)
    try:
        ds = Dataset.load(Path("data/ml-100k"))
        samples = select_samples(make_split(ds.timelines(), "loo", b.templates.window_size)["test"], N)
        options = GenerationOptions(max_tokens=b.generation.max_reasoning_tokens)
        sem = asyncio.Semaphore(24)

        async def one(i, s):
            async with sem:
                uv = await rec.user_vector(s.history, s.now, options, f"p{i}", True, s.seen)
                ranked = rec.rank_rows(uv.vector, s.history, 20, mask="seen", seen=s.seen)
                t = rec.catalog.row_of[s.target.item_id]
                hits = [k for k, r in enumerate(ranked.rows.tolist()) if r == t]
                return uv.vector, (hits[0] if hits else None)

        t0 = time.time()
        out = await asyncio.gather(*(one(i, s) for i, s in enumerate(samples)))
        print(f"{len(samples)} users in {time.time() - t0:.0f} s", flush=True)
    finally:
        await engine.close()
    V = np.load(B / "item_vectors.npy").astype(np.float64)
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    mu = V.mean(axis=0)
    Vc = (V - mu) / np.linalg.norm(V - mu, axis=1, keepdims=True)
    ranks = {"evaluator": [], "plain": [], "centred both": [], "user centred": []}
    cos_mean = []
    for (u, ev_rank), s in zip(out, samples, strict=True):
        u = u / np.linalg.norm(u)
        cos_mean.append(float(u @ mu / np.linalg.norm(mu)))
        masked = excluded_rows(rec.catalog, history_window(s.history, rec.templates), s.seen, "seen")
        t = rec.catalog.row_of[s.target.item_id]
        ranks["evaluator"].append(ev_rank)
        for name, sc in (
            ("plain", V @ u),
            ("centred both", Vc @ ((u - mu) / np.linalg.norm(u - mu))),
            ("user centred", V @ (u - mu)),
        ):
            r, _ = target_rank_and_probability(sc, t, masked)
            ranks[name].append(r if r < 20 else None)
    for name, r in ranks.items():
        m = summarize(r)
        print(f"{name}: NDCG@10 {m['ndcg@10']:.4f} Hit@10 {m['hit@10']:.4f} NDCG@20 {m['ndcg@20']:.4f}")
    print(
        f"user vectors' cosine to the items' mean direction: mean {np.mean(cos_mean):.3f}, min {np.min(cos_mean):.3f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
