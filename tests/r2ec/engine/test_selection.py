"""The default engine choice: vLLM in bfloat16 where it pays first, then the bundle's dtype, then transformers."""

from __future__ import annotations

import pytest

from r2ec.engine import selection
from r2ec.engine.selection import (
    Bf16Verdict,
    Candidate,
    bf16_verdict,
    candidates,
    cpu_flags,
    gemm_bf16_vs_f32,
    native_bf16,
    start_first,
)

XEON = (
    "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_bf16 amx_tile\n\nprocessor\t: 1\nflags\t\t: fpu\n"
)
OLD = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n"
DOT_ONLY = "processor\t: 0\nmodel name\t: Some Xeon\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n"


def _never() -> float:
    raise AssertionError("measured where the flags decide")


def test_bfloat16_pays_with_amx_and_is_timed_against_float32_where_only_avx512_bf16_computes_it(tmp_path):
    cache = tmp_path / "cpu-bf16.json"
    assert bf16_verdict("cpu", XEON, _never, cache) == Bf16Verdict(
        True, "native bfloat16 on this CPU (AMX or Arm BF16)"
    )
    assert not bf16_verdict("cpu", OLD, _never, cache).pays
    slow = bf16_verdict("cpu", DOT_ONLY, lambda: 1.70049, cache)
    assert not slow.pays and slow.slowdown == 1.7 and "1.70x float32's time" in slow.reason
    # Measured once per machine: the next process reads the verdict instead of timing again, to the same figure.
    assert bf16_verdict("cpu", DOT_ONLY, _never, cache) == slow
    # Another processor (other flags) is measured on its own, in the same file; within 10% bfloat16 is kept.
    other = DOT_ONLY.replace("avx512f", "avx512f avx512_fp16")
    assert bf16_verdict("cpu", other, lambda: 1.05, cache).pays
    assert bf16_verdict("cpu", DOT_ONLY, _never, cache) == slow
    # An unreadable record, or one this code did not write, is measured again rather than trusted.
    cache.write_text("{not json")
    assert bf16_verdict("cpu", DOT_ONLY, lambda: 0.8, cache).pays
    cache.write_text("[1.0]")
    assert not bf16_verdict("cpu", DOT_ONLY, lambda: 1.5, cache).pays
    assert bf16_verdict("cpu", DOT_ONLY, _never, cache).slowdown == 1.5


def test_the_timing_compares_the_same_product_in_both_dtypes_and_gives_the_threads_back():
    import torch

    threads = torch.get_num_threads()
    ratio = gemm_bf16_vs_f32((16, 64, 64), repeats=2)
    assert 0.0 < ratio < 100.0
    assert torch.get_num_threads() == threads  # timed on one thread, the process's own count restored


def test_where_bfloat16_does_not_pay_auto_serves_the_bundle_dtype_and_says_why(monkeypatch):
    slow = Bf16Verdict(False, "bfloat16 products take 1.70x float32's time on this CPU (AVX512-BF16, no AMX)", 1.7)
    monkeypatch.setattr(selection, "bf16_verdict", lambda device="cpu": slow)
    plan = candidates("auto", None, "float32", vllm=True)
    assert [(c.backend, c.dtype) for c in plan] == [("vllm", "float32"), ("transformers", "float32")]
    assert all(slow.reason in c.reason for c in plan)
    # An explicit dtype is never second-guessed.
    assert [c.dtype for c in candidates("auto", "bfloat16", "float32", vllm=True)] == ["bfloat16", "bfloat16"]


def test_cpu_bfloat16_is_read_from_the_processor_flags():
    assert "avx512_bf16" in cpu_flags(XEON)
    assert native_bf16("cpu", XEON) is True
    assert native_bf16("cpu", OLD) is False  # AVX-512 alone emulates bfloat16: no speed-up
    assert native_bf16("cpu", "") is False


def test_auto_tries_vllm_bfloat16_then_the_bundle_dtype_then_transformers():
    plan = candidates("auto", None, "float32", bf16=True, vllm=True)
    assert [(c.backend, c.dtype) for c in plan] == [
        ("vllm", "bfloat16"),
        ("vllm", "float32"),
        ("transformers", "bfloat16"),
    ]
    assert "native bfloat16" in plan[0].reason and "bundle" in plan[1].reason
    # no native bfloat16: the bundle's dtype only, saying why; no vLLM installed: transformers only
    plain = candidates("auto", None, "float32", bf16=False, vllm=True)
    assert [(c.backend, c.dtype) for c in plain] == [("vllm", "float32"), ("transformers", "float32")]
    assert all("no bfloat16 that pays" in c.reason for c in plain)
    assert [(c.backend, c.dtype) for c in candidates("auto", "auto", "float32", bf16=True, vllm=False)] == [
        ("transformers", "bfloat16")
    ]
    # a bundle made for bfloat16 (the authors' checkpoints) is not tried twice
    assert [c.dtype for c in candidates("auto", None, "bfloat16", bf16=True, vllm=True)] == ["bfloat16", "bfloat16"]


def test_what_is_asked_for_is_the_only_candidate():
    assert candidates("transformers", "float32", "bfloat16", bf16=True, vllm=True) == [
        Candidate("transformers", "float32", "backend transformers asked for; asked for")
    ]
    assert [(c.backend, c.dtype) for c in candidates("auto", "float32", "float32", bf16=True, vllm=True)] == [
        ("vllm", "float32"),
        ("transformers", "float32"),
    ]


class _Engine:
    def __init__(self, fail: bool):
        self.fail, self.closed, self.started = fail, False, False

    async def start(self) -> None:
        if self.fail:
            raise RuntimeError("no room for the KV cache")
        self.started = True

    async def close(self) -> None:
        self.closed = True


async def test_start_first_falls_back_and_records_every_attempt():
    built: list[_Engine] = []

    def build(c: Candidate) -> _Engine:
        built.append(_Engine(fail=c.backend == "vllm"))
        return built[-1]

    plan = candidates("auto", None, "float32", bf16=True, vllm=True)
    chosen = await start_first(plan, build, lambda e: e.start())  # type: ignore[arg-type]
    assert (chosen.backend, chosen.dtype) == ("transformers", "bfloat16") and chosen.engine is built[-1]
    assert [a.error is None for a in chosen.attempts] == [False, False, True]
    assert "no room for the KV cache" in (chosen.attempts[0].error or "")
    assert all(e.closed for e in built[:2]) and not built[-1].closed  # what did not start is released
    info = chosen.to_dict()
    assert info["backend"] == "transformers" and len(info["attempts"]) == 3


async def test_start_first_raises_the_last_error_when_nothing_starts():
    with pytest.raises(RuntimeError, match="KV cache"):
        await start_first(
            [Candidate("vllm", "float32", "x")],
            lambda c: _Engine(fail=True),  # type: ignore[arg-type,return-value]
            lambda e: e.start(),
        )


def test_usable_cores_are_the_process_affinity_not_the_machine():
    """A process held to one core (a container's cpuset, taskset) counts one, whatever the machine has."""
    import os
    import subprocess
    import sys

    assert selection.usable_cores() == len(os.sched_getaffinity(0))
    one = min(os.sched_getaffinity(0))
    code = (
        f"import os; os.sched_setaffinity(0, {{{one}}}); "
        "from r2ec.engine.selection import usable_cores; print(usable_cores())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "1"
