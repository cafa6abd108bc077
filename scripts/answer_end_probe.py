"""What ending generations in the engine core costs and what the state fetch waits for (vllm_budget, vllm_hook).

1. The logits processor's per-step cost (``AnswerEnd.apply``) with 16 requests in the batch, on the SmolLM2
   tokenizer: their last tokens without ``>`` (the usual step), and all of them with one (the worst case: a
   short decode per request).
2. On the demo bundle's vLLM engine (default settings), 8 and then 16 generations at a time, 64 tokens: how long
   the fetch of each forced generation's kept row over ``collective_rpc`` takes, and the kept/missed counts.

    python scripts/answer_end_probe.py
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import torch

from r2ec import ANSWER


def processor_cost(steps: int = 2000) -> dict[str, float]:
    from model_export.smollm2 import load_tokenizer
    from r2ec.engine.vllm_budget import AnswerEnd, Spec

    tok: Any = load_tokenizer()
    ids = tok.encode(ANSWER, add_special_tokens=False)
    text = "The user enjoyed dramas such as Heat, Fargo and Casino; next a thriller from the nineties. " * 3
    out = tok.encode(text, add_special_tokens=False)[:60]
    proc = AnswerEnd(None, torch.device("cpu"), False, tokenizer=tok)
    proc.specs = {i: Spec(None, ids, ANSWER, 0, list(out)) for i in range(16)}
    logits = torch.randn(16, len(tok))
    result = {}
    for case in ("no_gt", "all_gt"):
        if case == "all_gt":
            for spec in proc.specs.values():
                spec.output[-1] = tok.encode(" a > b", add_special_tokens=False)[-2]  # a token holding '>'
        proc.apply(logits)
        started = time.perf_counter()
        for _ in range(steps):
            proc.apply(logits)
        result[f"apply_us_16_requests_{case}"] = round((time.perf_counter() - started) / steps * 1e6, 1)
    return result


async def fetch_wait() -> dict[str, object]:
    from model_export.bundle import load_bundle
    from model_export.data.splits import temporal_split
    from model_export.demo import ensure_demo_bundle, ensure_movielens
    from r2ec.engine.base import GenerationOptions
    from r2ec.engine.settings import EngineSettings
    from r2ec.engine.vllm import VLLMEngine

    b = load_bundle(ensure_demo_bundle())
    eng = VLLMEngine(b.model_dir, b.tokenizer, EngineSettings(backend="vllm", max_model_len=4096, max_batch=16))
    await eng.start()
    out: dict[str, object] = {}
    try:
        rec = b.recommender(eng)
        users = temporal_split(ensure_movielens().timelines())["test"][:16]
        prompts = [rec.renderer.generation_prompt_ids(rec.prompt_for(u.history, u.now)) for u in users]
        options = GenerationOptions(max_tokens=64, deltas=False)
        for n in (8, 16):
            waits: list[float] = []
            for r in range(2):
                gens = await asyncio.gather(
                    *(eng.generate(p, options, f"p{n}-{r}-{i}") for i, p in enumerate(prompts[:n]))
                )
                waits += [(g.timings.capture_s or 0.0) * 1000 for g in gens if g.final_state is not None]
            out[f"{n}_at_a_time"] = {
                "n": len(waits),
                "fetch_p50_ms": round(statistics.median(waits), 1),
                "fetch_max_ms": round(max(waits), 1),
            }
        out["final_states"] = eng.stats()["final_states"]
    finally:
        await eng.close()
    return out


if __name__ == "__main__":
    import json

    print(json.dumps({"processor": processor_cost(), "fetch": asyncio.run(fetch_wait())}, indent=2))
