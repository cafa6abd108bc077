"""Transformers backend: the embedded default that runs anywhere, and the numerical reference.

One worker thread owns the model (``r2ec.engine.hf_batch``): concurrent generation requests are batched and decoded
step by step with a KV cache, each row answered as soon as it stops; encoding requests are served between decode
steps. This module is the engine's public side: lifecycle, admission, and the asyncio API over the worker's queues.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from r2ec import ANSWER
from r2ec.engine.base import Engine, EngineClosed, EngineOverloaded, Generation, GenerationEvent, GenerationOptions
from r2ec.engine.hf_batch import BatchWorker, EncJob, GenJob
from r2ec.engine.settings import EngineSettings
from r2ec.models import load_causal_lm, torch_dtype  # noqa: F401  (torch_dtype re-exported)


class TransformersEngine(Engine):
    name = "transformers"

    encode_batch_size = 16

    def __init__(
        self,
        model_dir: Path | str,
        tokenizer: Any,
        settings: EngineSettings | None = None,
        answer: str = ANSWER,
        model: Any | None = None,
        extra_stops: Sequence[str] = (),
    ):
        """``model``: an already loaded model to serve (training rollouts run the live policy); ``extra_stops``:
        texts that end reasoning besides ``answer`` (``GenerationDefaults.extra_stops``)."""
        s = settings or EngineSettings()
        self.model_dir = Path(model_dir)
        self.tokenizer = tokenizer
        self.dtype, self.device, self.max_batch, self.max_queue = s.dtype, s.device, s.max_batch, s.max_queue
        self.batch_wait_s = s.batch_wait_ms / 1000.0
        self.answer = answer
        self.extra_stops = tuple(extra_stops)
        self.model = model
        self._worker = BatchWorker(
            tokenizer,
            answer,
            extra_stops=extra_stops,
            max_batch=self.max_batch,
            batch_wait_s=self.batch_wait_s,
            encode_batch_size=self.encode_batch_size,
            on_token=self._count_token,
        )

    def _count_token(self) -> None:
        self.generated_tokens += 1

    # -- lifecycle -------------------------------------------------------------------------------------------
    async def start(self) -> None:
        if self.model is None:
            self.model = await asyncio.to_thread(load_causal_lm, self.model_dir, self.dtype, self.device)
        self._worker.start(self.model)

    async def close(self) -> None:
        self._worker.stop()
        await asyncio.to_thread(self._worker.join, 30)

    @property
    def ready(self) -> bool:
        return self._worker.alive

    def stats(self) -> dict[str, Any]:
        w = self._worker
        return {
            "queued": w.gen_q.qsize(),
            "running": w.running_rows,
            "peak_batch": w.peak_rows,
            "batches": w.batches,
            "encode_queued": w.enc_q.qsize(),
        }

    def _admit(self) -> None:
        if not self.ready:
            raise EngineClosed(f"transformers engine is not running ({self._worker.failed!r})")
        if self._worker.gen_q.qsize() >= self.max_queue:
            raise EngineOverloaded(f"generation queue is full ({self.max_queue})")

    # -- public API ------------------------------------------------------------------------------------------
    async def stream(
        self, prompt_ids: Sequence[int], options: GenerationOptions, request_id: str
    ) -> AsyncIterator[GenerationEvent]:
        self._admit()
        loop = asyncio.get_running_loop()
        job = GenJob(list(prompt_ids), options, request_id, loop, asyncio.Queue())
        self._worker.gen_q.put(job)
        try:
            while True:
                event = await job.events.get()
                if isinstance(event, BaseException):
                    raise event
                yield event
                if isinstance(event, Generation):
                    return
        finally:
            # Reached on normal completion too; setting the flag then is harmless.
            job.cancelled.set()

    async def encode(self, sequences: Sequence[Sequence[int]], request_id: str) -> np.ndarray:
        if not self.ready:
            raise EngineClosed("transformers engine is not running")
        loop = asyncio.get_running_loop()
        job = EncJob([list(s) for s in sequences], loop, loop.create_future())
        self._worker.enc_q.put(job)
        return await job.future
