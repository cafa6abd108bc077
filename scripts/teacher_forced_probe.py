"""python scripts/teacher_forced_probe.py [N] [SPLIT]  (from the repository root; the demo bundle, data/ml-100k)

Probe: does the generated reasoning cost the ranking anything against the trace the model was trained on? The
first N leave-one-out users of SPLIT (select_samples, seed 0; "all" for every one) are scored on prompt + the
template trace (training.traces.render_trace, from the bundle's own evidence table, which holds no valid or test
interaction) + <answer>, through the served vector path (vLLM float32, Recommender.vector_for), seen items masked.
Compare with `r2ec evaluate --limit N` on the same bundle, which scores the model's own greedy reasoning."""

import asyncio
import json
import sys
import time
from pathlib import Path

from entrypoints.evaluation import _open_recommender
from model_export.data.format import Dataset
from model_export.data.splits import select_samples
from model_export.data.splits import split as make_split
from r2ec.engine.base import StageTimes
from r2ec.metrics import summarize
from training.traces import render_trace

B = Path.home() / ".cache/r2ec/bundles/demo-smollm2-ml100k"
N = None if len(sys.argv) > 1 and sys.argv[1] == "all" else int(sys.argv[1]) if len(sys.argv) > 1 else 200
SPLIT = sys.argv[2] if len(sys.argv) > 2 else "test"


async def main():
    b, engine, rec = await _open_recommender(B, "vllm", "float32", 24, None, None)
    try:
        ds = Dataset.load(Path("data/ml-100k"))
        samples = select_samples(make_split(ds.timelines(), "loo", b.templates.window_size)[SPLIT], N)
        sem = asyncio.Semaphore(24)

        async def one(i, s):
            async with sem:
                message = rec.prompt_for(s.history, s.now, s.seen)
                trace = render_trace(s.history, rec.catalog, rec.templates, rec.evidence, s.seen)
                vector = await rec.vector_for(message, trace, f"tf{i}", StageTimes())
                ranked = rec.rank_rows(vector, s.history, 20, mask="seen", seen=s.seen)
                t = rec.catalog.row_of[s.target.item_id]
                hits = [k for k, r in enumerate(ranked.rows.tolist()) if r == t]
                return hits[0] if hits else None

        t0 = time.time()
        ranks = await asyncio.gather(*(one(i, s) for i, s in enumerate(samples)))
        summary = {"bundle_version": b.version, "split": SPLIT, "samples": len(ranks), **summarize(ranks)}
        summary["seconds"] = round(time.time() - t0, 1)
        print(json.dumps(summary))
    finally:
        await engine.close()


if __name__ == "__main__":
    asyncio.run(main())
