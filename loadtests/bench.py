"""``r2ec bench``: side-by-side latency / throughput benchmark of r2ec-serve (issue: load tests).

Scenarios (each reports p50/p95/p99, requests/s where it applies, failures):
  1 capture   vLLM generation of N tokens alone vs generation + hidden-state capture (same prompts, fixed length,
              interleaved), the extra tokens the capture computed (vLLM's prefix-cache counters), and the authors'
              way (generation, then a second full transformers forward)
  1b budget  reasoning cut by its budget, as served (vLLM): <answer> forced in the generation vs a capture pass after
              it, alone and 8 at a time, each group of prompts both ways in alternating order
  2 overhead  HTTP /v1/recommend vs the same work through the engine API in-process, concurrency 1
  3 scaling   throughput at 1/4/8/16 concurrent clients, reasoning on: a closed loop of N requests per level (or a
              time limit), for the backend ``r2ec serve`` picks by default and for each one named
  4 hot       cache hits at 32 concurrent clients against a floor (bare FastAPI, same uvicorn settings, same reply
              bytes), alternating runs; then the reasoning-free path
  5 catalog   FAISS at 100k / 1M items: exact, an IVF nprobe sweep and an HNSW efSearch sweep, with build time, p50
              latency and recall@10 against the exact top 10
  6 vllm      ``r2ec serve --backend vllm`` against vLLM's own OpenAI server on the same model, prompts and engine
              settings, at 1/4/8/16 clients (bench_vllm)
Medians and ratios are measured side by side in one run (requests interleaved, or runs alternated, where two paths
are compared). The load generator is ``loadtests.rawhttp`` (raw asyncio sockets). Loopback only; every loop is
bounded in count and time.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from loadtests.bench_catalog import scenario_catalog
from loadtests.bench_harness import BenchConfig, machine
from loadtests.bench_record import problems, public_path, save
from loadtests.bench_report import render_markdown
from loadtests.bench_scenarios import (
    scenario_budget,
    scenario_capture,
    scenario_hot,
    scenario_overhead,
    scenario_scaling,
)
from loadtests.bench_vllm import scenario_vllm
from model_export.bundle import load_bundle

__all__ = ["BenchConfig", "run_bench"]


async def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    bundle = load_bundle(cfg.bundle)
    config = {k: (public_path(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items() if k != "progress"}
    result: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": machine(),
        "command": cfg.command,
        "config": config,
        "scenarios": {},
    }
    work = Path(tempfile.mkdtemp(prefix="r2ec-bench-"))
    steps = {
        "capture": lambda: scenario_capture(cfg, bundle),
        "budget": lambda: scenario_budget(cfg, bundle),
        "overhead": lambda: scenario_overhead(cfg, bundle),
    }
    for name in cfg.scenarios:
        cfg.progress(f"[{name}]")
        started = time.perf_counter()
        if name in steps:
            result["scenarios"][name] = await steps[name]()
        elif name == "scaling":
            result["scenarios"][name] = await asyncio.to_thread(scenario_scaling, cfg)
        elif name == "hot":
            result["scenarios"][name] = await asyncio.to_thread(scenario_hot, cfg, work)
        elif name == "catalog":
            result["scenarios"][name] = await asyncio.to_thread(scenario_catalog, cfg)
        elif name == "vllm":
            result["scenarios"][name] = await asyncio.to_thread(scenario_vllm, cfg, bundle)
        else:
            raise ValueError(f"unknown scenario {name!r}")
        result["scenarios"][name]["wall_s"] = round(time.perf_counter() - started, 1)
        save(cfg.out, result)  # after every scenario: a crash keeps the rest
    result["problems"] = problems(result)
    save(cfg.out, result)
    if cfg.docs is not None:
        cfg.docs.parent.mkdir(parents=True, exist_ok=True)
        # Sections other tools own (between <!-- name:start --> / <!-- name:end --> markers) survive a re-run.
        old = cfg.docs.read_text() if cfg.docs.exists() else ""
        sections = re.findall(r"<!-- \w+:start -->.*?<!-- \w+:end -->", old, flags=re.S)
        cfg.docs.write_text(render_markdown(result).rstrip("\n") + "\n\n" + "\n\n".join(sections) + "\n")
    return result
