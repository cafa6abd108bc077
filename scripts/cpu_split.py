"""Where the CPU goes: `r2ec serve` (vLLM backend) and vLLM's own OpenAI server, started as `r2ec bench --scenarios
vllm` starts them, each run through the same closed loop of real histories while the CPU time of every process of
its tree is read before and after. Prints JSON: req/s and CPU seconds per process (frontend, engine core, worker).

    python scripts/cpu_split.py --clients 4 --requests 24
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import psutil

from loadtests import bench_harness as harness
from loadtests import bench_vllm
from loadtests.launcher import Process, start_all
from model_export.bundle import load_bundle
from model_export.demo import DEFAULT_BUNDLE, DEFAULT_DATA


def cpu_by_process(server: Process) -> dict[int, tuple[str, float]]:
    assert server.proc is not None
    root = psutil.Process(server.proc.pid)
    out = {}
    for p in [root, *root.children(recursive=True)]:
        t = p.cpu_times()
        out[p.pid] = (p.name(), t.user + t.system)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--requests", type=int, default=24)
    args = ap.parse_args()
    cfg = harness.BenchConfig(bundle=args.bundle, data=args.data, concurrency=(args.clients,))
    bundle = load_bundle(args.bundle)
    e = bench_vllm.engine_settings(cfg)
    ours_bodies, theirs_bodies = bench_vllm.paired_bodies(cfg, bundle, harness.histories(cfg.data, args.requests + 1))
    ours = bench_vllm.our_server(cfg, args.dtype, e)
    theirs = bench_vllm.vllm_server(cfg, bundle, args.dtype, e)
    start_all([ours, theirs])
    result: dict[str, Any] = {"clients": args.clients, "requests": args.requests, "dtype": args.dtype}
    try:
        for name, server, bodies, path in (
            ("recommend", ours, ours_bodies, "/v1/recommend"),
            ("vllm", theirs, theirs_bodies, "/v1/completions"),
        ):
            harness.load(server.url, bodies[-1:], 1, 1, 600, path=path)  # first-request costs, not measured
            before = cpu_by_process(server)
            loop = harness.load(server.url, bodies[:-1], args.clients, args.requests, 3600, path=path)
            after = cpu_by_process(server)
            summary = harness.loop_summary(loop)
            result[name] = {
                "rps": summary["rps"],
                "wall_s": summary["wall_s"],
                "cpu_s": {
                    f"{after[pid][0]} ({pid})": round(after[pid][1] - before.get(pid, ("", 0.0))[1], 2) for pid in after
                },
            }
    finally:
        ours.stop()
        theirs.stop()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
