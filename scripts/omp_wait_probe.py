"""What the OpenMP wait policy of vLLM's forward costs (``--vllm-omp-wait-policy``), side by side.

The demo bundle's vLLM engine on default settings but for the policy, started once per policy and round, in
alternating order: 1 and then 8 real MovieLens prompts at a time, 64 tokens each (fixed length), timed per group.
Prints one JSON line per group and a summary (medians, and the ratio of each policy's median to ``auto``'s).

    python scripts/omp_wait_probe.py [--rounds 2] [--policies auto,passive]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time


async def one(policy: str, prompts: list[list[int]], groups: int) -> dict[str, list[float]]:
    from model_export.bundle import load_bundle
    from model_export.demo import ensure_demo_bundle
    from r2ec.engine.base import GenerationOptions
    from r2ec.engine.settings import EngineSettings
    from r2ec.engine.vllm import VLLMEngine

    b = load_bundle(ensure_demo_bundle())
    settings = EngineSettings(backend="vllm", max_model_len=4096, max_batch=16, vllm_omp_wait_policy=policy)
    eng = VLLMEngine(b.model_dir, b.tokenizer, settings)
    await eng.start()
    opts = GenerationOptions(max_tokens=64, fixed_length=True)
    out: dict[str, list[float]] = {}
    try:
        await eng.generate(prompts[-1], opts, "warm")
        for c in (1, 8):
            for g in range(groups):
                group = prompts[g * 8 : g * 8 + c]
                started = time.perf_counter()
                await asyncio.gather(*(eng.generate(p, opts, f"{policy}-{c}-{g}-{i}") for i, p in enumerate(group)))
                out.setdefault(str(c), []).append(time.perf_counter() - started)
                print(json.dumps({"policy": policy, "at_a_time": c, "seconds": round(out[str(c)][-1], 3)}), flush=True)
    finally:
        await eng.close()
    return out


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--groups", type=int, default=2)
    ap.add_argument("--policies", default="auto,passive")
    args = ap.parse_args()
    from model_export.bundle import load_bundle
    from model_export.data.splits import temporal_split
    from model_export.demo import ensure_demo_bundle, ensure_movielens

    b = load_bundle(ensure_demo_bundle())
    rec = b.recommender(None)  # type: ignore[arg-type]  # prompts only
    users = temporal_split(ensure_movielens().timelines())["test"][: 8 * args.groups + 1]
    prompts = [rec.renderer.generation_prompt_ids(rec.prompt_for(u.history, u.now)) for u in users]
    policies = args.policies.split(",")
    times: dict[str, dict[str, list[float]]] = {p: {} for p in policies}
    for r in range(args.rounds):
        for policy in policies if r % 2 == 0 else list(reversed(policies)):
            for c, ts in (await one(policy, prompts, args.groups)).items():
                times[policy].setdefault(c, []).extend(ts)
    medians = {p: {c: statistics.median(ts) for c, ts in per.items()} for p, per in times.items()}
    base = policies[0]
    ratios = {p: {c: m / medians[base][c] for c, m in per.items()} for p, per in medians.items()}
    print(
        json.dumps(
            {
                "machine": platform.processor() or platform.machine(),
                "median_seconds": medians,
                f"ratio_to_{base}": ratios,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
