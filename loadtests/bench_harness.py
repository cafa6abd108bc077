"""What every ``r2ec bench`` scenario stands on: the config, sample statistics, the machine, real histories,
a server subprocess and a bounded closed loop of requests (``loadtests.rawhttp``) with its summary."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from loadtests import SCENARIOS
from loadtests.launcher import ServerProcess
from loadtests.rawhttp import LoopResult, closed_loop, run
from model_export.data.format import Dataset
from model_export.data.splits import temporal_split
from r2ec.engine.selection import bf16_verdict, native_bf16, usable_cores

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class BenchConfig:
    bundle: Path
    data: Path
    out: Path = Path("results/bench.json")
    docs: Path | None = Path("docs/benchmarks.md")
    scenarios: tuple[str, ...] = SCENARIOS
    capture_backend: str = "vllm"
    # "default": what ``r2ec serve`` picks when no backend is given (recorded as the server reports it)
    scaling_backend: str = "default,transformers"
    tokens: int = 64
    prompts: int = 32
    served_prompts: int = 16  # of those, run as served too (to <answer> within the bundle's budget)
    budget_prompts: int = 64  # scenario budget: each run forced and with a capture pass ...
    budget_concurrency: int = 8  # ... alone, and in groups of this many
    overhead_requests: int = 8
    concurrency: tuple[int, ...] = (1, 4, 8, 16)
    scaling_requests: int = 50  # per level: a closed loop stops after this many requests ...
    scaling_seconds: int = 1200  # ... or after this many seconds, whichever comes first
    vllm_requests: int = 50  # per level and server
    vllm_seconds: int = 1200  # time limit of one round of a level on one server
    # Each level's requests in this many runs per server, the order alternating (A B, B A, ...): the machine's
    # drift over a level then weighs on both servers alike, where one block per server lands on one side of it.
    vllm_rounds: int = 2
    vllm_dtypes: tuple[str, ...] = ()  # empty: the bundle's serving dtype
    vllm_kv_cache_gib: int = 1  # both servers (VLLM_CPU_KVCACHE_SPACE)
    vllm_gpu_memory_utilization: float = 0.4  # each server's share; both are up at once (one idle)
    vllm_reserved_cpus: int | None = None  # VLLM_CPU_NUM_OF_RESERVED_CPU for vLLM's server (None: as ours)
    hot_users: int = 32
    hot_requests: int = 20_000  # cache-hit requests per server (ours and the floor), over hot_rounds runs each
    hot_rounds: int = 4
    hot_free_requests: int = 200  # reasoning-free requests
    hot_seconds: int = 300  # time limit of one hot run
    catalog_sizes: tuple[int, ...] = (100_000, 1_000_000)
    catalog_queries: int = 200
    ivf_nprobes: tuple[int, ...] = (8, 16, 32, 64, 128, 256)
    hnsw_efs: tuple[int, ...] = (64, 128, 256, 512, 1024)
    recall_target: float = 0.95
    hnsw_max: int = 100_000
    catalog_dim: int = 576
    threads: int | None = None
    command: str = ""
    progress: Callable[[str], None] = field(default=lambda msg: print(msg, file=sys.stderr, flush=True))

    @property
    def rounds_per_level(self) -> int:
        """Rounds a vs-vLLM level really runs: at least one, and never more than the level has requests."""
        return max(1, min(self.vllm_rounds, self.vllm_requests))


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
        "cores": usable_cores(),  # what this run could use (its affinity), as the engine's rules count them
        "cores_online": os.cpu_count(),
        "native_bf16": native_bf16("cpu"),
        "bf16_verdict": asdict(bf16_verdict("cpu")),  # what makes `auto` pick bfloat16 (r2ec.engine.selection)
        "memory_gib": round(mem_gib, 1),
        "gpu": gpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "vllm": vllm_version,
        "commit": commit,
    }


@dataclass(frozen=True)
class CpuTimes:
    """The machine's CPU time so far (the first line of /proc/stat, in clock ticks): all of it, and the part a
    hypervisor gave to other guests (steal). On a shared VM steal is time lost by whatever ran meanwhile, so two
    runs compared side by side are only comparable where their steal shares are alike."""

    total: int
    steal: int

    @classmethod
    def parse(cls, stat: str) -> CpuTimes | None:
        """From /proc/stat's text; None where its ``cpu`` line has no steal column (kernels before 2.6.11)."""
        for line in stat.splitlines():
            fields = line.split()
            if fields and fields[0] == "cpu":
                # user nice system idle iowait irq softirq steal (guest time is counted in user already)
                ticks = [int(x) for x in fields[1:9]]
                return cls(sum(ticks), ticks[7]) if len(ticks) == 8 else None
        return None

    @classmethod
    def now(cls) -> CpuTimes | None:
        try:
            return cls.parse(Path("/proc/stat").read_text())
        except OSError:  # not Linux
            return None


def steal_share(before: CpuTimes | None, after: CpuTimes | None) -> float | None:
    """The share of the machine's CPU time stolen between two readings (None: not measurable here)."""
    if before is None or after is None or after.total <= before.total:
        return None
    return (after.steal - before.steal) / (after.total - before.total)


def histories(data: Path, n: int) -> list[Any]:
    samples = temporal_split(Dataset.load(data).timelines())["test"]
    step = max(1, len(samples) // max(n, 1))
    return samples[::step][:n]


def service_message(rec: Any, sample: Any) -> str:
    """The user message ``r2ec serve`` renders for ``history_body(sample)`` (a ``Recommender.prompt_for``): the
    events in time order, ages measured to the sample's time, evidence leaving out every history item (the API's
    default ``exclude_history``)."""
    history = sorted(sample.history, key=lambda e: e.timestamp)
    return str(rec.prompt_for(history, sample.now, [e.item_id for e in history]))


def request_body(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def history_body(sample: Any, tokens: int, **extra: Any) -> dict[str, Any]:
    """A /v1/recommend body for a test sample: its history, ``as_of`` its time (so the prompt is fixed), no cache."""
    history = [{"item_id": e.item_id, "rating": e.rating, "timestamp": e.timestamp} for e in sample.history]
    body = {"history": history, "k": 10, "max_reasoning_tokens": tokens, "as_of": sample.now, "use_cache": False}
    return body | extra


def start_server(
    bundle: Path, backend: str, extra: dict[str, str] | None = None, threads: int | None = None, wait: bool = True
) -> ServerProcess:
    """``r2ec serve`` on ``bundle``; ``backend`` "default" leaves the choice to the server (no ``R2EC_BACKEND``)."""
    env = {"R2EC_LOG_LEVEL": "warning", "R2EC_MAX_QUEUE": "512", **(extra or {})}
    if backend != "default":
        env["R2EC_BACKEND"] = backend
    if threads:
        env["R2EC_THREADS"] = str(threads)
    srv = ServerProcess(bundle, env)
    return srv.start(timeout=600) if wait else srv


def loop_summary(result: LoopResult) -> dict[str, Any]:
    """Requests, failures, requests/s (successes over the loop's wall time) and the latency distribution."""
    ok = result.latencies
    return {
        "clients": result.clients,
        "requests": len(result.done),
        "failures": result.failures,
        "rps": len(ok) / result.wall_s if result.wall_s > 0 else 0.0,
        "wall_s": round(result.wall_s, 2),
        "stopped_by": result.stopped_by,
        **({"errors": dict(result.errors)} if result.errors else {}),
        **dist(ok),
    }


def level_bodies(bodies: list[bytes], level: int, n: int) -> list[bytes]:
    """The ``n`` request bodies of load level ``level``: each level its own histories while there are enough."""
    return [bodies[(level * n + i) % len(bodies)] for i in range(n)]


def merge_loops(results: list[LoopResult]) -> LoopResult:
    """Runs of one server as one: their requests together, their wall times added."""
    merged = LoopResult(clients=results[0].clients, wall_s=sum(r.wall_s for r in results), stopped_by="requests")
    for r in results:
        merged.done += r.done
        merged.errors.update(r.errors)
        if r.stopped_by == "time":
            merged.stopped_by = "time"
    return merged


def load(url: str, bodies: list[bytes], clients: int, requests: int, seconds: float, **kw: Any) -> LoopResult:
    """A bounded closed loop of POST /v1/recommend (or ``path``) on this thread's own event loop."""
    path = kw.pop("path", "/v1/recommend")
    return run(closed_loop(url, path, bodies, clients, requests, seconds, **kw))
