"""The engine's settings, defined once: the service's ``Settings`` inherits ``EngineFields`` (so each is also an
``R2EC_*`` variable and a ``r2ec serve`` flag), and every engine takes an ``EngineSettings``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Backend = Literal["transformers", "vllm"]

# At most this many cores, the model's threads take them all by default (vllm_cpu_reserved).
SMALL_MACHINE_CORES = 2


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
    vllm_in_process: bool = Field(
        True,
        description="The model runs in vLLM's engine-core process (one executor; on the CPU its OpenMP threads "
        "bound as vLLM binds a worker: VLLM_CPU_OMP_THREADS_BIND, VLLM_CPU_NUM_OF_RESERVED_CPU), as vLLM runs it on "
        "a GPU; false: as vLLM's OpenAI server runs it on the CPU, in a worker process of its own. With the "
        "forward's OpenMP threads waiting as the runtime's default has them (vllm_omp_wait_policy auto), the "
        "engine-core layout served 13% / 3% more requests/s at 1 / 8 clients on 2 cores (two runs one after the "
        "other, each against vLLM's own server: docs/benchmarks.md). The engine core is a process of its own "
        "either way.",
    )
    vllm_cpu_reserved: int | None = Field(
        None,
        ge=0,
        description="On the CPU, cores kept off the model's OpenMP threads for the frontend (HTTP, ranking, "
        "scheduling); empty (auto): VLLM_CPU_NUM_OF_RESERVED_CPU where it is set, else none on a machine of at most "
        f"{SMALL_MACHINE_CORES} cores (there one core kept for the frontend is half the forward's compute), else "
        "vLLM's own default (one).",
    )
    vllm_answer_at_budget: Literal["auto", "on", "off"] = Field(
        "auto",
        description="A logits processor that ends each generation in the engine core right after <answer> (its "
        "last step is the user vector; a stop string can abort it before that step), and a generation cut by its "
        "reasoning budget goes on with <answer> forced, instead of a capture pass after it. Forcing, auto: where other "
        "generations are in flight (each forced token is then a row in a step the batch runs anyway; alone, a "
        "step per token costs more than one capture pass), on the CPU only (on a GPU, vLLM's async scheduling "
        "syncs each step for a custom logits processor; not measured here); on: always, anywhere; off: no processor.",
    )
    vllm_omp_wait_policy: Literal["auto", "passive", "active", "inherit"] = Field(
        "auto",
        description="On the CPU, OMP_WAIT_POLICY of vLLM's engine-core and worker processes, whose OpenMP threads "
        "run the forward, one pinned per core: auto, unset (the OpenMP runtime's default: a thread spins a while "
        "after a parallel region, then sleeps; what vLLM's own server gets); passive: sleep at once, which wakes "
        "every thread for each of the forward's hundreds of parallel regions (17% / 8% more time 1 / 8 at a time on "
        "2 cores: docs/benchmarks.md); active: spin always; inherit: this process's variable (r2ec's commands "
        "set PASSIVE for their own threads).",
    )
    vllm_state_handoff: Literal["shm", "rpc"] = Field(
        "shm",
        description="How the worker hands a request's kept hidden state (the user vector, a capture pass's row) to the "
        "server: shm, a shared-memory slot the worker writes in the step that computes it (the server reads it with "
        "the request's final output); rpc: a collective_rpc call, which vLLM's engine core serves only between steps "
        "(a request that ends while others generate waits up to a step). shm falls back to rpc where shared memory "
        "cannot be set up. Generations use it where the engine core ends them (vllm_answer_at_budget; the CPU by "
        "default: the hook copies each step's row to the host, which would sync a GPU), capture passes everywhere.",
    )
    vllm_block_size: int = Field(
        0,
        ge=0,
        description="vLLM KV-cache block size in tokens; 0: 32 on the CPU (the smallest its attention kernel takes; "
        "the capture pass recomputes what lies past the last full block), vLLM's own default on a GPU.",
    )


class EngineSettings(EngineFields):
    model_config = ConfigDict(frozen=True)

    @classmethod
    def from_settings(cls, settings: EngineFields, **overrides: Any) -> EngineSettings:
        """The engine fields of ``settings`` (e.g. the service's), then ``overrides``."""
        values = {name: getattr(settings, name) for name in EngineFields.model_fields}
        return cls.model_validate({**values, **overrides})
