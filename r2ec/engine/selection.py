"""Which engine serves when nobody says: the fastest path that starts, in bfloat16 where it pays.

``auto`` tries vLLM first (continuous batching and the hidden-state hook; 3-5x the transformers backend's
throughput at 8 clients on the 2-core CPU machines of docs/benchmarks.md), in bfloat16 where it is faster than
float32 here, then in the bundle's dtype, then falls back to the transformers backend, the numerical reference,
which starts wherever PyTorch runs. Each attempt is recorded (what failed and how long it took), so ``/info`` says
what is serving and why. An explicit backend or dtype is never second-guessed: it is the only candidate.

Whether bfloat16 pays: on a GPU that supports it, and on a CPU with AMX or Arm's BF16, yes. A CPU whose only
bfloat16 instructions are AVX512-BF16 dot products may compute a bfloat16 matrix product at half float32's rate
(an Intel Xeon measured here without AMX: 85 against 150 GFLOP/s at prefill sizes in vLLM's oneDNN kernels, and
vLLM served 16% fewer requests at 8 clients; docs/benchmarks.md): there one compute-bound product is timed in
both dtypes, once per machine (the verdict is kept under ``R2EC_HOME``, so every process on it picks alike).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from r2ec import logs
from r2ec.engine.base import Engine
from r2ec.paths import r2ec_home

log = logs.get(__name__)

AUTO = "auto"
X86_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
X86_AMX_FLAGS = ("amx_bf16", "amx_tile")
# bfloat16 is kept where its product takes at most this much longer than float32's: it halves the bytes that each
# decode step reads (weights, KV cache), so a small loss in compute-bound prefill is still a gain overall.
BF16_SLOWDOWN_KEPT = 1.1
GEMM_SHAPE = (256, 1024, 1024)  # rows x in x out: a prefill-sized product, compute-bound on any CPU


def usable_cores() -> int:
    """The cores this process may run on (its affinity: a container's cpuset), not all the machine has."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpu_flags(cpuinfo: str) -> set[str]:
    """Feature flags of ``/proc/cpuinfo`` text (``flags`` on x86, ``Features`` on Arm)."""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return flags


def _read_cpuinfo() -> str:
    path = Path("/proc/cpuinfo")
    return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""


def native_bf16(device: str = "cpu", cpuinfo: str | None = None) -> bool:
    """Whether ``device`` computes bfloat16 natively (not emulated through float32)."""
    if device.startswith("cuda"):
        import torch

        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    flags = cpu_flags(_read_cpuinfo() if cpuinfo is None else cpuinfo)
    if platform.machine().lower() in ("aarch64", "arm64"):
        return "bf16" in flags
    return any(f in flags for f in X86_BF16_FLAGS)


def gemm_bf16_vs_f32(shape: tuple[int, int, int] = GEMM_SHAPE, repeats: int = 9) -> float:
    """Time of one bfloat16 matrix product over the float32 one of the same ``shape`` (best of ``repeats`` each,
    interleaved) on one thread, as vLLM's CPU worker computes on cores of its own (a second thread here shares its
    core with whatever else runs, which only adds noise): above 1, bfloat16 computes slower here."""
    import torch

    m, k, n = shape
    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(m, k, generator=gen), torch.randn(n, k, generator=gen)
    pairs = {dt: (x.to(dt), w.to(dt)) for dt in (torch.float32, torch.bfloat16)}
    best = dict.fromkeys(pairs, float("inf"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            for a, b in pairs.values():  # first calls pick and pack kernels: not timed
                torch.nn.functional.linear(a, b)
            for _ in range(repeats):
                for dt, (a, b) in pairs.items():
                    began = time.perf_counter()
                    torch.nn.functional.linear(a, b)
                    best[dt] = min(best[dt], time.perf_counter() - began)
    finally:
        torch.set_num_threads(threads)
    return best[torch.bfloat16] / best[torch.float32]


@dataclass(frozen=True)
class Bf16Verdict:
    """Whether bfloat16 serves faster than float32 on this device, and why."""

    pays: bool
    reason: str
    slowdown: float | None = None  # bfloat16 product time / float32's, where it was measured


def bf16_verdict(
    device: str = "cpu",
    cpuinfo: str | None = None,
    measure: Callable[[], float] | None = None,
    cache: Path | None = None,
) -> Bf16Verdict:
    """Whether to serve in bfloat16 on ``device`` (see the module text). ``measure`` and ``cache`` default to
    :func:`gemm_bf16_vs_f32` and a file under ``R2EC_HOME`` keyed by the processor and torch version."""
    if device.startswith("cuda"):
        native = native_bf16(device)
        return Bf16Verdict(native, "native bfloat16 on this GPU" if native else "this GPU has no bfloat16")
    info = _read_cpuinfo() if cpuinfo is None else cpuinfo
    if not native_bf16(device, info):
        return Bf16Verdict(False, "no native bfloat16 on this CPU")
    flags = cpu_flags(info)
    if platform.machine().lower() in ("aarch64", "arm64") or any(f in flags for f in X86_AMX_FLAGS):
        return Bf16Verdict(True, "native bfloat16 on this CPU (AMX or Arm BF16)")
    slowdown = _cached_slowdown(info, measure or gemm_bf16_vs_f32, cache)
    pays = slowdown <= BF16_SLOWDOWN_KEPT
    reason = f"bfloat16 products take {slowdown:.2f}x float32's time on this CPU (AVX512-BF16, no AMX)"
    return Bf16Verdict(pays, reason, slowdown)


def _cached_slowdown(cpuinfo: str, measure: Callable[[], float], cache: Path | None) -> float:
    """The measured slowdown, read from ``cache`` where this processor and torch measured it before."""
    import torch

    model = next((line.partition(":")[2].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "")
    key = hashlib.sha256(f"{model}|{sorted(cpu_flags(cpuinfo))}|{torch.__version__}".encode()).hexdigest()[:16]
    path = cache or r2ec_home() / "cpu-bf16.json"
    known: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):  # no record yet, or not one this code wrote: measured again
        loaded = json.loads(path.read_text())
        known = loaded if isinstance(loaded, dict) else {}
    with contextlib.suppress(KeyError, TypeError, ValueError):
        return float(known[key]["slowdown"])
    slowdown = round(measure(), 3)  # as the record keeps it: every process reports the same figure
    known[key] = {"cpu": model, "torch": torch.__version__, "slowdown": slowdown}
    with contextlib.suppress(OSError):  # a read-only home measures again next time
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known, indent=1))
        tmp.replace(path)  # atomic: concurrent processes read a whole file
    log.info("bfloat16 measured against float32", extra={"slowdown": slowdown, "cpu": model})
    return slowdown


def vllm_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


@dataclass(frozen=True)
class Candidate:
    backend: str
    dtype: str
    reason: str


@dataclass
class Attempt:
    backend: str
    dtype: str
    reason: str
    seconds: float
    error: str | None = None  # None: this one started

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Selection:
    """The engine that started, how, and what was tried before it."""

    engine: Engine
    backend: str
    dtype: str
    start_s: float
    attempts: list[Attempt] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "dtype": self.dtype,
            "start_s": round(self.start_s, 2),
            "attempts": [a.to_dict() for a in self.attempts],
        }


def candidates(
    backend: str,
    dtype: str | None,
    bundle_dtype: str,
    device: str = "cpu",
    bf16: bool | None = None,
    vllm: bool | None = None,
) -> list[Candidate]:
    """What to try, in order. ``backend``: auto, vllm or transformers; ``dtype``: None/auto or an explicit one.

    ``bf16`` (whether bfloat16 pays here: :func:`bf16_verdict`) and ``vllm`` (vLLM installed) are probed when
    not given.
    """
    if dtype in (None, AUTO):
        given = "native bfloat16 on this device (given)" if bf16 else "no bfloat16 that pays on this device (given)"
        verdict = bf16_verdict(device) if bf16 is None else Bf16Verdict(bf16, given)
        fast = verdict.pays
        dtypes = ["bfloat16"] if fast else []
        dtypes += [bundle_dtype] if bundle_dtype not in dtypes else []
        # where bfloat16 was passed over (no native bfloat16, or timed and lost), the bundle's dtype says why
        bundle_why = "the bundle's dtype" + ("" if fast else f"; {verdict.reason}")
        why = {d: (verdict.reason if d == "bfloat16" and fast else bundle_why) for d in dtypes}
    else:
        dtypes, why = [dtype], {dtype: "asked for"}
    if backend != AUTO:
        return [Candidate(backend, d, f"backend {backend} asked for; {why[d]}") for d in dtypes]
    out: list[Candidate] = []
    if vllm_installed() if vllm is None else vllm:
        out += [Candidate("vllm", d, f"auto: vLLM first; {why[d]}") for d in dtypes]
    out.append(Candidate("transformers", dtypes[0], f"auto: the reference backend; {why[dtypes[0]]}"))
    return out


async def start_first(
    plan: Sequence[Candidate], build: Callable[[Candidate], Engine], start: Callable[[Engine], Awaitable[None]]
) -> Selection:
    """Build and start each candidate in turn until one starts; raise the last error if none does."""
    attempts: list[Attempt] = []
    last: BaseException | None = None
    for c in plan:
        began = time.perf_counter()
        engine: Engine | None = None
        try:
            engine = build(c)
            await start(engine)
        except Exception as e:  # any start failure moves on to the next candidate
            if engine is not None:
                with contextlib.suppress(Exception):  # free what a half-started engine holds
                    await engine.close()
            seconds = time.perf_counter() - began
            attempts.append(Attempt(c.backend, c.dtype, c.reason, round(seconds, 2), f"{type(e).__name__}: {e}"[:500]))
            log.warning(
                "engine did not start; trying the next",
                extra={"backend": c.backend, "dtype": c.dtype, "error": attempts[-1].error, "seconds": seconds},
            )
            last = e
            continue
        seconds = time.perf_counter() - began
        attempts.append(Attempt(c.backend, c.dtype, c.reason, round(seconds, 2)))
        log.info("engine started", extra={"backend": c.backend, "dtype": c.dtype, "seconds": round(seconds, 2)})
        return Selection(engine, c.backend, c.dtype, seconds, attempts)
    if last is None:
        raise ValueError("no engine to try")
    raise last
