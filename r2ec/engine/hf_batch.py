"""The transformers engine's worker thread: one thread owns the model and runs the batch/step loop.

Queued generation jobs are grouped into a batch (up to ``max_batch``, waiting at most ``batch_wait_s`` for company),
sorted by prompt length so that similar lengths share a batch, left-padded and decoded step by step with a KV cache;
each row stops on its own at ``<answer>``, EOS or its token budget, and is answered at once. Encoding jobs are
served between decode steps so that a finished request's capture never waits for another batch's whole generation.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from r2ec.encoder import encode as encode_sequences
from r2ec.encoder import pad_id_of
from r2ec.engine.base import Delta, EngineClosed, Generation, GenerationEvent, GenerationOptions, StageTimes
from r2ec.engine.reasoning import IncrementalText, ReasoningStream
from r2ec.engine.sampling import choose_token
from r2ec.models import stop_token_ids


@dataclass
class GenJob:
    prompt_ids: list[int]
    options: GenerationOptions
    request_id: str
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[GenerationEvent | BaseException]
    cancelled: threading.Event = field(default_factory=threading.Event)
    enqueued: float = field(default_factory=time.perf_counter)

    def emit(self, event: GenerationEvent | BaseException) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, event)


@dataclass
class EncJob:
    sequences: list[list[int]]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[np.ndarray]

    def resolve(self, value: np.ndarray | BaseException) -> None:
        def _set() -> None:
            if self.future.done():
                return
            if isinstance(value, BaseException):
                self.future.set_exception(value)
            else:
                self.future.set_result(value)

        self.loop.call_soon_threadsafe(_set)


@dataclass
class _Row:
    job: GenJob
    generator: torch.Generator | None
    stream: ReasoningStream
    detokenizer: IncrementalText
    generated: list[int] = field(default_factory=list)
    done: bool = False
    reason: str = ""
    text: str = ""
    error: BaseException | None = None
    finished: bool = False  # its Generation was emitted
    final_state: np.ndarray | None = None


class BatchWorker:
    """The thread that owns the model and serves the engine's two queues (``gen_q`` and ``enc_q``)."""

    def __init__(
        self,
        tokenizer: Any,
        answer: str,
        *,
        extra_stops: Sequence[str] = (),
        max_batch: int,
        batch_wait_s: float,
        encode_batch_size: int,
        on_token: Callable[[], None],
    ):
        self.tokenizer = tokenizer
        self.answer = answer
        self._answer_len = len(tokenizer.encode(answer, add_special_tokens=False))  # GenerationOptions.own_tokens
        self.extra_stops = tuple(extra_stops)
        self.max_batch = max_batch
        self.batch_wait_s = batch_wait_s
        self.encode_batch_size = encode_batch_size
        self.on_token = on_token  # once per generated token (the engine's ``generated_tokens``)
        self.pad_id = pad_id_of(tokenizer)
        self.model: Any = None
        self.gen_q: queue.Queue[GenJob] = queue.Queue()
        self.enc_q: queue.Queue[EncJob] = queue.Queue()
        self.running_rows = 0
        self.peak_rows = 0
        self.batches = 0
        self.failed: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stop_ids: set[int] = set()

    def start(self, model: Any) -> None:
        self.model = model
        self._stop_ids = stop_token_ids(self.tokenizer, model)
        self._thread = threading.Thread(target=self._run, name="r2ec-transformers", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self.failed is None

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._drain_encodes()
                try:
                    first = self.gen_q.get(timeout=0.01)
                except queue.Empty:
                    continue
                batch = [first]
                deadline = time.perf_counter() + self.batch_wait_s
                while len(batch) < self.max_batch:
                    remaining = deadline - time.perf_counter()
                    try:
                        batch.append(
                            self.gen_q.get(timeout=max(remaining, 0)) if remaining > 0 else self.gen_q.get_nowait()
                        )
                    except queue.Empty:
                        break
                batch = [j for j in batch if not j.cancelled.is_set()]
                if batch:
                    batch.sort(key=lambda j: len(j.prompt_ids))
                    self._generate_batch(batch)
        except BaseException as exc:  # the thread must report, never die silently
            self.failed = exc
            self._fail_pending(exc)
            raise

    def _fail_pending(self, exc: BaseException) -> None:
        while True:
            try:
                self.gen_q.get_nowait().emit(EngineClosed(str(exc)))
            except queue.Empty:
                break
        while True:
            try:
                self.enc_q.get_nowait().resolve(EngineClosed(str(exc)))
            except queue.Empty:
                break

    def _drain_encodes(self) -> None:
        jobs: list[EncJob] = []
        while True:
            try:
                jobs.append(self.enc_q.get_nowait())
            except queue.Empty:
                break
        if not jobs:
            return
        flat = [seq for job in jobs for seq in job.sequences]
        try:
            vectors = encode_sequences(self.model, flat, self.pad_id, batch_size=self.encode_batch_size)
        except Exception as exc:
            for job in jobs:
                job.resolve(exc)
            return
        start = 0
        for job in jobs:
            job.resolve(vectors[start : start + len(job.sequences)])
            start += len(job.sequences)

    @torch.inference_mode()
    def _generate_batch(self, jobs: list[GenJob]) -> None:
        model = self.model
        assert model is not None
        device = next(model.parameters()).device
        rows = []
        for job in jobs:
            gen = None
            if not job.options.greedy:
                gen = torch.Generator(device="cpu")
                gen.manual_seed(job.options.seed if job.options.seed is not None else int(time.time_ns() % (2**63)))
            rows.append(_Row(job, gen, ReasoningStream(self.answer, self.extra_stops), IncrementalText(self.tokenizer)))
        longest = max(len(j.prompt_ids) for j in jobs)
        ids = torch.full((len(jobs), longest), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(jobs), longest), dtype=torch.long)
        for r, job in enumerate(jobs):
            n = len(job.prompt_ids)
            ids[r, longest - n :] = torch.tensor(job.prompt_ids, dtype=torch.long)
            mask[r, longest - n :] = 1
        ids, mask = ids.to(device), mask.to(device)
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        started = time.perf_counter()
        self.running_rows = len(rows)
        self.peak_rows = max(self.peak_rows, len(rows))
        self.batches += 1
        try:
            out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
            past = out.past_key_values
            logits = out.logits[:, -1, :]
            step_positions = positions[:, -1:]
            max_steps = max(j.options.max_tokens for j in jobs)
            for _ in range(max_steps):
                next_ids = []
                # Rows that end at <answer> in this step: the forward below feeds their last token anyway, and
                # its post-norm state at that token is their user vector (when it re-tokenises to itself).
                capture: list[int] = []
                for r, row in enumerate(rows):
                    if row.done:
                        next_ids.append(self.pad_id)
                        continue
                    if row.job.cancelled.is_set():
                        row.done, row.reason = True, "aborted"
                        next_ids.append(self.pad_id)
                        continue
                    try:
                        token = choose_token(logits[r], row.job.options, row.generator)
                    except Exception as exc:  # this row's own fault: it fails alone, its batch goes on
                        row.done, row.reason, row.error = True, "error", exc
                        row.job.emit(exc)
                        next_ids.append(self.pad_id)
                        continue
                    row.generated.append(token)
                    self.on_token()
                    next_ids.append(token)
                    self._advance(row, token)
                    if row.done and row.reason == "answer":
                        capture.append(r)
                # A finished request never waits for its batch: answered now (those at <answer> after the forward).
                for r, row in enumerate(rows):
                    if row.done and not row.finished and row.error is None and r not in capture:
                        self._finish(row, started)
                if all(row.done for row in rows) and not capture:
                    break
                self._drain_encodes()
                step_positions = step_positions + 1
                mask = torch.cat([mask, torch.ones((len(rows), 1), dtype=mask.dtype, device=device)], dim=1)
                out = model(
                    input_ids=torch.tensor(next_ids, dtype=torch.long, device=device).unsqueeze(1),
                    attention_mask=mask,
                    position_ids=step_positions,
                    past_key_values=past,
                    use_cache=True,
                    output_hidden_states=bool(capture),
                )
                past = out.past_key_values
                logits = out.logits[:, -1, :]
                for r in capture:
                    rows[r].final_state = out.hidden_states[-1][r, -1].float().cpu().numpy()
                    self._finish(rows[r], started)
                if all(row.done for row in rows):
                    break
            for row in rows:
                if not row.done:
                    row.done, row.reason = True, "length"
                if row.error is None and not row.finished:
                    self._finish(row, started)
        except Exception as exc:
            for row in rows:
                row.job.emit(exc)
        finally:
            self.running_rows = 0

    def _advance(self, row: _Row, token: int) -> None:
        """Update a row after it produced ``token``: stream the new safe text, decide whether it is done."""
        text = row.detokenizer.push(token)
        row.text = text
        delta = row.stream.update(text)
        if delta:
            row.job.emit(Delta(delta))
        if row.job.options.fixed_length:
            if len(row.generated) >= row.job.options.max_tokens:
                row.done, row.reason = True, "length"
        elif ended := row.stream.ended(text):
            row.done, row.reason = True, ended
        elif token in self._stop_ids:
            row.done, row.reason = True, "eos"
        elif len(row.generated) >= row.job.options.own_tokens(self._answer_len):
            row.done, row.reason = True, "length"

    def _finish(self, row: _Row, started: float) -> None:
        row.finished = True
        row.text = row.detokenizer.full()  # the one whole decode: the final text is exactly the tokenizer's
        reasoning, rest, _ = row.stream.finish(row.text)
        if rest:
            row.job.emit(Delta(rest))
        now = time.perf_counter()
        timings = StageTimes(queue_s=started - row.job.enqueued, generation_s=now - started)
        with contextlib.suppress(RuntimeError):  # loop closed: the caller is gone
            row.job.emit(
                Generation(
                    reasoning,
                    row.job.options.output_tokens(len(row.generated), row.reason, self._answer_len),
                    row.reason,
                    timings,
                    list(row.generated),
                    row.final_state,
                )
            )
