"""The default engine choice: vLLM in native bfloat16 first, then the bundle's dtype, then transformers."""

from __future__ import annotations

import pytest

from r2ec.engine.selection import Candidate, candidates, cpu_flags, native_bf16, start_first

XEON = (
    "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_bf16 amx_tile\n\nprocessor\t: 1\nflags\t\t: fpu\n"
)
OLD = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n"


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
    # no native bfloat16: the bundle's dtype only; no vLLM installed: transformers only
    assert [(c.backend, c.dtype) for c in candidates("auto", None, "float32", bf16=False, vllm=True)] == [
        ("vllm", "float32"),
        ("transformers", "float32"),
    ]
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
