"""What every ``r2ec bench`` scenario stands on: the config, sample statistics, the machine, real histories,
a server subprocess and a locust run (closed loop, CSV stats)."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from loadtests.launcher import ServerProcess
from model_export.data.format import Dataset
from model_export.data.splits import temporal_split

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class BenchConfig:
    bundle: Path
    data: Path
    out: Path = Path("results/bench.json")
    docs: Path | None = Path("docs/benchmarks.md")
    scenarios: tuple[str, ...] = ("capture", "overhead", "scaling", "hot", "catalog")
    capture_backend: str = "vllm"
    scaling_backend: str = "vllm"
    tokens: int = 64
    prompts: int = 8
    overhead_requests: int = 8
    concurrency: tuple[int, ...] = (1, 4, 8, 16)
    scaling_seconds: int = 60
    hot_users: int = 32
    hot_seconds: int = 30
    catalog_sizes: tuple[int, ...] = (1_000, 10_000, 100_000, 1_000_000)
    hnsw_max: int = 100_000
    catalog_dim: int = 576
    threads: int | None = None
    command: str = ""
    progress: Callable[[str], None] = field(default=lambda msg: print(msg, file=sys.stderr, flush=True))


def dist(samples: Sequence[float]) -> dict[str, float]:
    xs = sorted(samples)
    if not xs:
        return {"n": 0}

    def q(p: float) -> float:
        return float(np.percentile(xs, p))

    return {
        "n": len(xs),
        "p50_ms": q(50) * 1000,
        "p95_ms": q(95) * 1000,
        "p99_ms": q(99) * 1000,
        "mean_ms": statistics.fmean(xs) * 1000,
    }


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    try:
        import vllm

        vllm_version = vllm.__version__
    except ImportError:
        vllm_version = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "gpu": gpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "vllm": vllm_version,
        "commit": commit,
    }


def histories(data: Path, n: int) -> list[Any]:
    samples = temporal_split(Dataset.load(data).timelines())["test"]
    step = max(1, len(samples) // max(n, 1))
    return samples[::step][:n]


# -- scenario 1 ------------------------------------------------------------------------------------------------


def start_server(
    bundle: Path, backend: str, extra: dict[str, str] | None = None, threads: int | None = None
) -> ServerProcess:
    env = {"R2EC_BACKEND": backend, "R2EC_LOG_LEVEL": "warning", "R2EC_MAX_QUEUE": "512", **(extra or {})}
    if threads:
        env["R2EC_THREADS"] = str(threads)
    return ServerProcess(bundle, env).start(timeout=600)


# -- scenario 2 ------------------------------------------------------------------------------------------------


def locust(
    url: str, data: Path, users: int, seconds: int, weights: dict[str, int], tokens: int, out_prefix: Path
) -> dict[str, Any]:
    from loadtests.stats import summary_from_csv

    args = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(ROOT / "loadtests" / "locustfile.py"),
        "--headless",
        "--host",
        url,
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{seconds}s",
        "--stop-timeout",
        "120",
        "--csv",
        str(out_prefix),
        "--only-summary",
        "--data",
        str(data),
        "--reasoning-tokens",
        str(tokens),
        "--loglevel",
        "WARNING",
    ]
    for name in ("reasoning", "no-reasoning", "cache-hit", "stream"):
        args += [f"--w-{name}", str(weights.get(name, 0))]
    subprocess.run(args, check=False, capture_output=True, timeout=seconds + 300)
    return summary_from_csv(out_prefix)
