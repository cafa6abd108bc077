"""The engine interface shared by the service, the offline evaluator and training rollouts.

An engine does two things: continue a prompt with reasoning until ``<answer>`` (streaming text deltas), and encode
token-id sequences into normalised last-token post-norm hidden states. Everything else (prompts, rendering,
ranking) is backend-independent and lives in ``r2ec.recommender``.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np


class EngineOverloaded(RuntimeError):
    """The engine's admission queue is full; callers should shed load (HTTP 429)."""


class EngineClosed(RuntimeError):
    """The engine is shut down or failed; no further work is accepted."""


class InvalidRequest(ValueError):
    """This request (not the engine) is at fault, e.g. its sampling options leave no token to sample. It fails
    alone: the other requests of its batch go on (HTTP 422)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class GenerationOptions:
    max_tokens: int = 128
    temperature: float = 0.0  # 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0
    seed: int | None = None
    fixed_length: bool = False  # benchmarks: generate exactly max_tokens, ignoring <answer> and EOS
    # False: the caller keeps only the result, so an engine may skip its per-step outputs (vLLM: FINAL_ONLY, what
    # its own server does for a completion that is not streamed); one Delta of the whole reasoning still comes.
    deltas: bool = True

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    def own_tokens(self, answer_len: int) -> int:
        """The most tokens the model writes by itself. ``max_tokens`` counts ``<answer>``'s ``answer_len`` ids too,
        as an LLM server's max_tokens counts a stop text's: reasoning that ends at ``<answer>`` does so within
        max_tokens, and reasoning cut here has ``<answer>`` written for it (forced, or by the capture) and takes
        max_tokens in all, not max_tokens + answer_len. So a request's output, and the decode steps it costs, are
        bounded by its budget whichever way it ends (at least one token of the model's own)."""
        if self.fixed_length:
            return self.max_tokens
        return max(1, self.max_tokens - answer_len)

    def output_tokens(self, own: int, finish_reason: str, answer_len: int) -> int:
        """``Generation.num_tokens`` of a reasoning that wrote ``own`` tokens itself: its output tokens,
        ``<answer>``'s ids included (the model's own where it wrote them; the ids written for it where the budget
        cut it, which then takes max_tokens exactly)."""
        if finish_reason == "length" and not self.fixed_length:
            return own + answer_len
        return own

    def cache_key(self) -> str:
        if self.greedy:
            return f"greedy:{self.max_tokens}"
        return f"t{self.temperature}:k{self.top_k}:p{self.top_p}:s{self.seed}:{self.max_tokens}"


@dataclass
class StageTimes:
    """Seconds one request spent per pipeline stage; None where the stage did not run (a cache hit, no reasoning)."""

    queue_s: float | None = None
    generation_s: float | None = None
    capture_s: float | None = None

    STAGES = ("queue", "generation", "capture")

    def seconds(self, stage: str) -> float | None:
        value: float | None = getattr(self, f"{stage}_s")
        return value


@dataclass
class Generation:
    """Finished reasoning: the text before ``<answer>``, its output tokens (``<answer>``'s ids included:
    ``GenerationOptions.output_tokens``), how it ended."""

    text: str
    num_tokens: int
    # "answer" | "stop" (an extra stop text) | "concluded" (r2ec.recommender.concluded) | "length" | "eos" | "aborted"
    finish_reason: str
    timings: StageTimes = field(default_factory=StageTimes)
    # The generated ids (both backends). An engine that also ran its last generated token through the model (the
    # transformers backend does, on the generation's own KV cache) hands over the post-norm hidden state there:
    # the user vector when prompt + these ids are exactly the re-tokenised user sequence, with no second forward.
    token_ids: list[int] = field(default_factory=list)
    final_state: Any = None  # np.ndarray (hidden,) or None


@dataclass(frozen=True)
class Delta:
    text: str


GenerationEvent = Delta | Generation

R = TypeVar("R")


async def final(events: AsyncIterable[Delta | R], missing: str) -> R:
    """The result that ends a stream of deltas (an engine's ``Generation``, the recommender's ``UserVector``, the
    service's response), the deltas dropped; ``RuntimeError(missing)`` when the stream ends without one."""
    async for event in events:
        if not isinstance(event, Delta):
            return event
    raise RuntimeError(missing)


class Relay(Generic[R]):
    """Passes a stream's deltas on and keeps its result: ``async for d in relay.deltas(events): yield d``, then
    ``relay.result``."""

    def __init__(self) -> None:
        self._result: R | None = None

    async def deltas(self, events: AsyncIterable[Delta | R]) -> AsyncIterator[Delta]:
        async for event in events:
            if isinstance(event, Delta):
                yield event
            else:
                self._result = event

    @property
    def result(self) -> R:
        assert self._result is not None
        return self._result


class Engine(abc.ABC):
    name: str = "engine"
    # Tokens generated so far, aborted and timed-out generations included (the service exports it).
    generated_tokens: int = 0
    # Texts that end reasoning besides <answer> (GenerationDefaults.extra_stops of the bundle served).
    extra_stops: tuple[str, ...] = ()

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    def stream(
        self, prompt_ids: Sequence[int], options: GenerationOptions, request_id: str
    ) -> AsyncIterator[GenerationEvent]:
        """Yield ``Delta`` events (reasoning text safe to show) and finally one ``Generation``.

        Closing the iterator early (client gone, deadline) aborts the request in the engine.
        """

    async def generate(self, prompt_ids: Sequence[int], options: GenerationOptions, request_id: str) -> Generation:
        return await final(self.stream(prompt_ids, options, request_id), "engine stream ended without a result")

    @abc.abstractmethod
    async def encode(self, sequences: Sequence[Sequence[int]], request_id: str) -> np.ndarray:
        """Normalised float32 vectors (n, dim) at the last token of each sequence."""

    @property
    @abc.abstractmethod
    def ready(self) -> bool: ...

    def stats(self) -> dict[str, Any]:
        return {}
