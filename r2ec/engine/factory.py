"""Build an engine for a bundle from its settings (used by the service, the evaluator and the benchmarks)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from r2ec.engine.base import Engine
from r2ec.engine.settings import Backend, EngineFields, EngineSettings

__all__ = ["Backend", "EngineFields", "EngineSettings", "build_engine"]


def build_engine(
    model_dir: Path, tokenizer: Any, settings: EngineSettings, answer: str, extra_stops: Sequence[str] = ()
) -> Engine:
    if settings.backend == "transformers":
        from r2ec.engine.hf import TransformersEngine

        return TransformersEngine(model_dir, tokenizer, settings, answer, extra_stops=extra_stops)
    if settings.backend == "vllm":
        from r2ec.engine.vllm import VLLMEngine

        return VLLMEngine(model_dir, tokenizer, settings, answer, extra_stops)
    raise ValueError(f"unknown backend {settings.backend!r}")
