"""Build an engine for a bundle from plain settings (used by the service, the evaluator and the trainer)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

from r2ec.engine.base import Engine

Backend = Literal["transformers", "vllm"]


@dataclass(frozen=True)
class EngineSettings:
    backend: Backend = "transformers"
    dtype: str = "float32"
    device: str = "cpu"
    max_batch: int = 8
    batch_wait_ms: float = 5.0
    max_queue: int = 256
    max_model_len: int = 4096
    vllm_capture: Literal["hook", "pooling"] = "hook"
    vllm_in_process: bool = True
    vllm_enforce_eager: bool = True
    vllm_gpu_memory_utilization: float = 0.85
    vllm_kv_cache_gib: float = 1.0

    @classmethod
    def from_settings(cls, settings: object, **overrides: Any) -> EngineSettings:
        """Every field that ``settings`` (e.g. the service's) has under the same name, then ``overrides``."""
        found = {f.name: getattr(settings, f.name) for f in fields(cls) if getattr(settings, f.name, None) is not None}
        return replace(cls(**found), **overrides)


def build_engine(model_dir: Path, tokenizer: Any, settings: EngineSettings, answer: str) -> Engine:
    if settings.backend == "transformers":
        from r2ec.engine.hf import TransformersEngine

        return TransformersEngine(
            model_dir,
            tokenizer,
            dtype=settings.dtype,
            device=settings.device,
            max_batch=settings.max_batch,
            batch_wait_s=settings.batch_wait_ms / 1000.0,
            max_queue=settings.max_queue,
            answer=answer,
        )
    if settings.backend == "vllm":
        from r2ec.engine.vllm import VLLMEngine

        return VLLMEngine(
            model_dir,
            tokenizer,
            dtype=settings.dtype,
            max_model_len=settings.max_model_len,
            capture=settings.vllm_capture,
            in_process=settings.vllm_in_process,
            enforce_eager=settings.vllm_enforce_eager,
            max_num_seqs=max(settings.max_batch, 1),
            max_queue=settings.max_queue,
            gpu_memory_utilization=settings.vllm_gpu_memory_utilization,
            kv_cache_gib=settings.vllm_kv_cache_gib,
            answer=answer,
        )
    raise ValueError(f"unknown backend {settings.backend!r}")
