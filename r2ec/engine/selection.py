"""Which engine serves when nobody says: the fastest path that starts, in bfloat16 where the hardware has it.

``auto`` tries vLLM first (continuous batching and the hidden-state hook; 3-5x the transformers backend's
throughput at 8 clients on the 2-core CPU machines of docs/benchmarks.md), in bfloat16 where the processor
computes it natively (AVX512-BF16 or AMX on x86, BF16 on Arm, a GPU that supports it), then in the bundle's dtype,
then falls back to the transformers backend, the numerical reference, which starts wherever PyTorch runs. Each
attempt is recorded (what failed and how long it took), so ``/info`` says what is serving and why. An explicit
backend or dtype is never second-guessed: it is the only candidate.
"""

from __future__ import annotations

import contextlib
import platform
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from r2ec import logs
from r2ec.engine.base import Engine

log = logs.get(__name__)

AUTO = "auto"
X86_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: str) -> set[str]:
    """Feature flags of ``/proc/cpuinfo`` text (``flags`` on x86, ``Features`` on Arm)."""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return flags


def native_bf16(device: str = "cpu", cpuinfo: str | None = None) -> bool:
    """Whether ``device`` computes bfloat16 natively (not emulated through float32)."""
    if device.startswith("cuda"):
        import torch

        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    flags = cpu_flags(cpuinfo)
    if platform.machine().lower() in ("aarch64", "arm64"):
        return "bf16" in flags
    return any(f in flags for f in X86_BF16_FLAGS)


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

    ``bf16`` and ``vllm`` (native bfloat16, vLLM installed) are probed when not given.
    """
    if dtype in (None, AUTO):
        fast = native_bf16(device) if bf16 is None else bf16
        dtypes = ["bfloat16"] if fast else []
        dtypes += [bundle_dtype] if bundle_dtype not in dtypes else []
        why = {
            d: ("native bfloat16 on this device" if d == "bfloat16" and fast else "the bundle's dtype") for d in dtypes
        }
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
