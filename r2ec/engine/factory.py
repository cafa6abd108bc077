"""Build an engine for a bundle from plain settings (used by the service, the evaluator and the trainer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from r2ec.engine.base import Engine

Backend = Literal["transformers", "vllm"]


class EngineFields(BaseModel):
    """The engine's settings, defined once: the service's ``Settings`` inherits them (so each is also an
    ``R2EC_*`` variable and a ``r2ec serve`` flag) and ``EngineSettings`` is what the engines are built from."""

    backend: Backend = Field("transformers", description="Inference backend.")
    dtype: str = Field("float32", description="Model dtype: float32, bfloat16, float16.")
    device: str = Field("cpu", description="Device for the transformers backend (cpu, cuda).")
    max_batch: int = Field(8, description="Max requests batched together (transformers) / max running seqs (vLLM).")
    batch_wait_ms: float = Field(5.0, description="How long the transformers batcher waits for company.")
    max_queue: int = Field(256, description="Requests the engine holds beyond which it refuses (overloaded).")
    max_model_len: int = Field(4096, description="vLLM context length.")
    vllm_capture: Literal["hook", "pooling"] = Field(
        "hook", description="Hidden-state capture: worker hook or pooling engine."
    )
    vllm_gpu_memory_utilization: float = Field(0.85, description="vLLM GPU memory fraction.")
    vllm_kv_cache_gib: float = Field(1.0, description="vLLM CPU KV cache size (GiB).")
    vllm_enforce_eager: bool = Field(True, description="Disable CUDA graphs / compilation (faster start).")


class EngineSettings(EngineFields):
    model_config = ConfigDict(frozen=True)

    vllm_in_process: bool = True  # the engine core in this process (tests, CPU); the service keeps the default

    @classmethod
    def from_settings(cls, settings: EngineFields, **overrides: Any) -> EngineSettings:
        """The engine fields of ``settings`` (e.g. the service's), then ``overrides``."""
        values = {name: getattr(settings, name) for name in EngineFields.model_fields}
        return cls.model_validate({**values, **overrides})


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
