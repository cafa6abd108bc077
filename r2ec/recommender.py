"""The recommendation pipeline on top of any engine: history -> prompt -> reasoning -> user vector -> ranking.

The service, the offline evaluator and training rollouts all go through this class, so that a given history,
bundle and generation options produce the same ranking everywhere.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from r2ec.bundle import Bundle
from r2ec.catalog import Catalog, Event, Item
from r2ec.chat import ChatRenderer
from r2ec.engine.base import Delta, Engine, Generation, GenerationOptions, Relay, StageTimes, final
from r2ec.evidence import Transitions
from r2ec.exclusion import Mask, excluded_rows
from r2ec.pooling import l2_normalize
from r2ec.prompts import history_window, user_prompt
from r2ec.scoring import Ranked, Ranker
from r2ec.templates import PromptTemplates


def concluded(stopped: Generation, cue: str, rest: Generation) -> Generation:
    """One generation of reasoning cut at an extra stop text, then continued from ``cue`` (budget forcing, as in
    s1): the model writes its conclusion in its own words, up to ``<answer>`` within what is left of the budget.

    ``token_ids``/``final_state`` are the continuation's, so that its last forward can be the user vector.
    """
    reason = "concluded" if rest.finish_reason == "answer" else rest.finish_reason
    timings = StageTimes(
        queue_s=stopped.timings.queue_s,
        generation_s=(stopped.timings.generation_s or 0.0) + (rest.timings.generation_s or 0.0),
        capture_s=rest.timings.capture_s,
    )
    return Generation(
        stopped.text + cue + rest.text,
        stopped.num_tokens + rest.num_tokens,
        reason,
        timings,
        rest.token_ids,
        rest.final_state,
    )


@dataclass
class UserVector:
    vector: np.ndarray  # normalised
    reasoning: str | None  # None in reasoning-free mode
    generation: Generation | None
    timings: StageTimes = field(default_factory=StageTimes)


@dataclass(frozen=True)
class ScoredItem:
    item: Item
    score: float  # cosine
    probability: float  # softmax(cos / tau) over every rankable item


class Recommender:
    def __init__(
        self,
        engine: Engine,
        catalog: Catalog,
        templates: PromptTemplates,
        ranker: Ranker,
        tokenizer: Any,
        evidence: Transitions | None = None,
        conclusion: str = "",
    ):
        """``conclusion``: the cue reasoning is continued with after one of the engine's extra stop texts ended it
        (``GenerationDefaults.conclusion``); empty: such reasoning is scored as it stands."""
        self.engine = engine
        self.conclusion = conclusion
        self.evidence = evidence
        self.catalog = catalog
        self.templates = templates
        self.ranker = ranker
        self.renderer = ChatRenderer(tokenizer, templates)
        self.reused_states = 0  # user vectors taken from the generation's own last forward (no capture pass)
        self.captured_states = 0  # user vectors that needed a pass of their own (engine.encode)

    @classmethod
    def from_bundle(cls, bundle: Bundle, engine: Engine, conclusion: str | None = None) -> Recommender:
        """The pipeline over a bundle's catalog, templates, vectors, evidence and tokenizer, on ``engine``
        (``conclusion``: None = the bundle's generation default)."""
        cue = bundle.generation.conclusion if conclusion is None else conclusion
        return cls(engine, bundle.catalog, bundle.templates, bundle.ranker(), bundle.tokenizer, bundle.evidence, cue)

    # -- prompts ---------------------------------------------------------------------------------------------
    def prompt_for(self, history: Sequence[Event], now: float, exclude: Iterable[str] = ()) -> str:
        """The user message; ``exclude``: item ids its evidence lines leave out (what the ranking will mask)."""
        return user_prompt(history, self.catalog, now, self.templates, self.evidence, exclude)

    # -- user vectors ----------------------------------------------------------------------------------------
    async def stream_user_vector(
        self, message: str, options: GenerationOptions, request_id: str, reasoning: bool = True
    ) -> AsyncIterator[Delta | UserVector]:
        """Yield reasoning deltas as they are generated, then the ``UserVector`` of ``message`` (a ``prompt_for``)."""
        timings = StageTimes()
        generation: Generation | None = None
        text = ""
        prompt_ids: list[int] = []
        if reasoning:
            prompt_ids = self.renderer.generation_prompt_ids(message)
            relay: Relay[Generation] = Relay()
            async for delta in relay.deltas(self.engine.stream(prompt_ids, options, request_id)):
                yield delta
            generation = relay.result
            if generation.finish_reason == "stop" and self.conclusion and generation.num_tokens < options.max_tokens:
                yield Delta(self.conclusion)
                prompt_ids = self.renderer.continuation_ids(message, generation.text + self.conclusion)
                rest = replace(options, max_tokens=options.max_tokens - generation.num_tokens)
                relay = Relay()
                async for delta in relay.deltas(self.engine.stream(prompt_ids, rest, f"{request_id}-conclusion")):
                    yield delta
                generation = concluded(generation, self.conclusion, relay.result)
            text = generation.text
            timings = replace(generation.timings)
        vector = await self.vector_for(message, text, request_id, timings, prompt_ids, generation)
        yield UserVector(vector, text if reasoning else None, generation, timings)

    async def user_vector(
        self,
        history: Sequence[Event],
        now: float,
        options: GenerationOptions,
        request_id: str,
        reasoning: bool = True,
        exclude: Iterable[str] = (),
    ) -> UserVector:
        message = self.prompt_for(history, now, exclude)
        events = self.stream_user_vector(message, replace(options, deltas=False), request_id, reasoning)
        return await final(events, "pipeline ended without a user vector")

    async def vector_for(
        self,
        message: str,
        reasoning: str,
        request_id: str,
        timings: StageTimes,
        prompt_ids: Sequence[int] = (),
        generation: Generation | None = None,
    ) -> np.ndarray:
        """Vector of prompt + reasoning + ``<answer>`` (re-tokenised from text, as the reference does).

        When the engine already ran exactly that sequence (the generation's ids re-tokenise to themselves and
        ended at ``<answer>``), its final state is the vector: the same forward, so no second one.
        """
        started = time.perf_counter()
        ids = self.renderer.user_sequence_ids(message, reasoning)
        if (
            generation is not None
            and generation.final_state is not None
            and ids == [*prompt_ids, *generation.token_ids]
        ):
            vector = l2_normalize(np.asarray(generation.final_state, dtype=np.float32).reshape(1, -1))[0]
            self.reused_states += 1
        else:
            vector = (await self.engine.encode([ids], request_id))[0]
            self.captured_states += 1
        # The engine may have spent part of the capture already (fetching the generation's own final state).
        timings.capture_s = (timings.capture_s or 0.0) + time.perf_counter() - started
        return vector

    def vector_sources(self) -> dict[str, int]:
        """User vectors so far by source: ``generation`` (its own last step) or ``capture`` (a pass of their own)."""
        return {"generation": self.reused_states, "capture": self.captured_states}

    # -- ranking ---------------------------------------------------------------------------------------------
    def excluded_rows(
        self, history: Sequence[Event], mask: Mask = "window", seen: Iterable[str] = (), extra: Iterable[str] = ()
    ) -> list[int]:
        return excluded_rows(self.catalog, history_window(history, self.templates), seen, mask, extra)

    def rank_rows(
        self,
        vector: np.ndarray,
        history: Sequence[Event],
        k: int,
        candidates: Sequence[str] | None = None,
        mask: Mask = "window",
        seen: Iterable[str] = (),
        exclude: Iterable[str] = (),
    ) -> Ranked:
        rows = None if candidates is None else [self.catalog.row_of[c] for c in candidates]
        return self.ranker.rank(vector, k, self.excluded_rows(history, mask, seen, exclude), rows)

    def scored(self, ranked: Ranked) -> list[ScoredItem]:
        """Catalog items with cosine and probability, in ranked order."""
        return [
            ScoredItem(self.catalog.items[int(r)], float(c), float(p))
            for r, c, p in zip(ranked.rows, ranked.cosines, ranked.probabilities, strict=True)
        ]
