"""The logic behind /v1/recommend: resolve the history, use the cache, run the pipeline, rank, shape the answer."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

from r2ec import logs
from r2ec.catalog import Catalog, Event
from r2ec.engine.base import Delta, GenerationOptions, Relay, StageTimes, final
from r2ec.prompts import history_window
from r2ec.recommender import Recommender, UserVector
from service.cache import CachedResult
from service.errors import ApiError, ErrorType
from service.protocol import RankedItem, RecommendRequest, RecommendResponse, Timings
from service.state import ServiceState
from service.user_store import StoreUnavailable

log = logs.get(__name__)


def check_known(catalog: Catalog, ids: Iterable[str], field: str) -> None:
    """422 naming the first id that is not in the catalog, e.g. ``history[2].item_id``; ``field`` has ``{i}``."""
    for i, item_id in enumerate(ids):
        if item_id not in catalog:
            raise ApiError(ErrorType.VALIDATION, f"unknown item id {item_id!r}", field.format(i=i))


def result_key(
    bundle_version: str, prompt: str, options: GenerationOptions, reasoning: bool, tenant: str | None = None
) -> str:
    """Cache identity: bundle, the exact user prompt the model would see, generation options and the tenant.

    Keying on the rendered prompt makes the cache exactly as fine as the model's input: events sent without a
    timestamp (ages 0) or an explicit ``as_of`` give the same prompt and hit; ages that moved on miss. The
    tenant (``service.auth``: a named tenant or a key's digest) keeps one tenant from learning, through
    ``X-Cache``, what another recently asked.
    """
    payload = {
        "b": bundle_version,
        "p": hashlib.sha256(prompt.encode()).hexdigest(),
        "o": options.cache_key() if reasoning else "no-reasoning",
        "t": tenant,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@dataclass
class Prepared:
    history: list[Event]
    window: list[Event]
    options: GenerationOptions
    k: int
    now: float
    cache_key: str | None
    seen: list[str]  # every history event (stored + sent): masked with exclude_history, not only the window
    message: str  # the rendered user prompt (cache key and model input)


class RecommendService:
    def __init__(self, state: ServiceState):
        self.state = state
        self.settings = state.settings

    @property
    def recommender(self) -> Recommender:
        if self.state.recommender is None:
            raise ApiError(ErrorType.NOT_READY, "the model is still loading")
        return self.state.recommender

    # -- validation beyond the schema ------------------------------------------------------------------------
    async def prepare(self, req: RecommendRequest, tenant: str | None = None) -> Prepared:
        s = self.settings
        rec = self.recommender
        now = req.as_of if req.as_of is not None else time.time()
        k = req.k if req.k is not None else s.default_k
        if k > s.max_k:
            raise ApiError(ErrorType.VALIDATION, f"k must be at most {s.max_k}", "k")
        st = self.state
        budget = req.max_reasoning_tokens if req.max_reasoning_tokens is not None else st.default_reasoning_tokens
        if budget > st.max_reasoning_tokens:
            raise ApiError(
                ErrorType.VALIDATION,
                f"max_reasoning_tokens must be at most {st.max_reasoning_tokens}",
                "max_reasoning_tokens",
            )
        if len(req.history) > s.max_history:
            raise ApiError(ErrorType.VALIDATION, f"at most {s.max_history} history events", "history")
        check_known(rec.catalog, (e.item_id for e in req.history), "history[{i}].item_id")
        if req.candidates is not None:
            if len(req.candidates) > len(rec.catalog):
                raise ApiError(ErrorType.VALIDATION, "more candidates than catalog items", "candidates")
            check_known(rec.catalog, req.candidates, "candidates[{i}]")
        check_known(rec.catalog, req.exclude or [], "exclude[{i}]")
        stored: list[Event] = []
        if req.user_id is not None:
            users = self.state.users
            assert users is not None
            try:
                found = await users.get(req.user_id, tenant)
            except StoreUnavailable:
                if not req.history:
                    raise ApiError(
                        ErrorType.DEPENDENCY, "user contexts are unavailable right now; send history", "user_id"
                    ) from None
                found = None  # degrade: rank on the history the client sent
                log.warning("user store down; using request history only", extra={"user_id": req.user_id})
            if found is None and not req.history:
                raise ApiError(ErrorType.NOT_FOUND, f"user {req.user_id!r} has no stored events", "user_id")
            stored = [e for e in (found or []) if e.item_id in rec.catalog]
        history = stored + [e.to_event(now) for e in req.history]
        if not history:
            raise ApiError(ErrorType.VALIDATION, "give history events or a user_id with stored events", "history")
        history.sort(key=lambda e: e.timestamp)  # stable: equal times keep their order
        sampling = req.sampling
        options = GenerationOptions(
            max_tokens=budget,
            temperature=sampling.temperature,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            seed=sampling.seed,
        )
        window = history_window(history, rec.templates)
        deterministic = options.greedy or options.seed is not None
        key = None
        seen = [e.item_id for e in history]
        # Rendered once: the cache key and the model's input. Its evidence leaves out what the ranking masks.
        message = rec.prompt_for(history, now, [*(seen if req.exclude_history else ()), *(req.exclude or ())])
        if req.use_cache and deterministic:
            assert self.state.bundle is not None
            key = result_key(self.state.bundle.version, message, options, req.reasoning, tenant)
        return Prepared(history, window, options, k, now, key, seen, message)

    # -- admission ---------------------------------------------------------------------------------------------
    def admit(self) -> None:
        st = self.state
        if st.draining:
            raise ApiError(ErrorType.DRAINING, "the server is shutting down")
        if not st.ready:
            raise ApiError(ErrorType.NOT_READY, "the model is not ready")
        if st.inflight >= self.settings.max_queue:
            raise ApiError(ErrorType.OVERLOADED, f"{st.inflight} requests in flight (limit {self.settings.max_queue})")
        st.inflight += 1
        st.idle.clear()
        self._gauges()

    def release(self) -> None:
        st = self.state
        st.inflight -= 1
        if st.inflight == 0:
            st.idle.set()
        self._gauges()

    def _gauges(self) -> None:
        m = self.state.metrics
        m.inflight.set(self.state.inflight)
        m.queue_depth.set(self.state.inflight / max(1, self.settings.max_batch))

    # -- the pipeline ------------------------------------------------------------------------------------------
    async def lookup(self, prep: Prepared) -> CachedResult | None:
        cache = self.state.results
        if prep.cache_key is None or cache is None:
            return None
        hit = await cache.get(prep.cache_key)
        outcome = "hit" if hit is not None else ("miss" if cache.healthy else "error")
        self.state.metrics.cache.labels(outcome).inc()
        self.state.metrics.cache_up.set(1 if cache.healthy else 0)
        return hit

    async def stream(
        self, req: RecommendRequest, request_id: str, tenant: str | None = None, deltas: bool = True
    ) -> AsyncGenerator[Delta | RecommendResponse, None]:
        """Reasoning deltas as generated (none on a cache hit), then the response. ``deltas=False``: the caller
        keeps only the response, so the engine need not report each step (``GenerationOptions.deltas``)."""
        started = time.perf_counter()
        prep = await self.prepare(req, tenant)
        rec = self.recommender
        hit = await self.lookup(prep)
        timings = StageTimes()
        if hit is not None:
            vector, reasoning, tokens, finish = hit.vector, hit.reasoning, hit.tokens, hit.finish_reason
            if reasoning:
                yield Delta(reasoning)
        else:
            relay: Relay[UserVector] = Relay()
            async for delta in relay.deltas(
                rec.stream_user_vector(prep.message, replace(prep.options, deltas=deltas), request_id, req.reasoning)
            ):
                yield delta
            result = relay.result
            timings = result.timings
            vector, reasoning = result.vector, result.reasoning
            tokens = result.generation.num_tokens if result.generation else 0
            finish = result.generation.finish_reason if result.generation else None
            if prep.cache_key is not None and self.state.results is not None:
                await self.state.results.put(prep.cache_key, CachedResult(reasoning, vector, tokens, finish))
        search_started = time.perf_counter()
        scored = rec.scored(
            rec.rank_rows(
                vector,
                prep.history,
                prep.k,
                req.candidates,
                mask="seen" if req.exclude_history else "none",
                seen=prep.seen,
                exclude=req.exclude or (),
            )
        )
        search_s = time.perf_counter() - search_started
        m = self.state.metrics
        for stage in StageTimes.STAGES:
            seconds = timings.seconds(stage)
            if seconds is not None:
                m.stage.labels(stage).observe(seconds)
        m.stage.labels("search").observe(search_s)
        assert self.state.bundle is not None
        yield RecommendResponse(
            request_id=request_id,
            items=[
                RankedItem(
                    item_id=s.item.item_id,
                    title=s.item.title,
                    year=s.item.year,
                    genres=list(s.item.genres),
                    score=s.score,
                    probability=s.probability,
                )
                for s in scored
            ],
            reasoning=reasoning if req.reasoning else None,
            reasoning_tokens=tokens,
            finish_reason=finish,
            cached=hit is not None,
            model=self.state.bundle.name,
            bundle_version=self.state.bundle.version,
            history_used=len(prep.window),
            timings=Timings(
                total_ms=(time.perf_counter() - started) * 1000,
                queue_ms=(timings.queue_s or 0.0) * 1000,
                generation_ms=(timings.generation_s or 0.0) * 1000,
                capture_ms=(timings.capture_s or 0.0) * 1000,
                search_ms=search_s * 1000,
            ),
        )

    async def bounded(
        self, req: RecommendRequest, request_id: str, tenant: str | None = None, deltas: bool = True
    ) -> AsyncGenerator[Delta | RecommendResponse, None]:
        """``stream`` under the request deadline, for unary and streaming alike: past it, ``ApiError(TIMEOUT)``
        is raised and the engine request is aborted (closing ``stream`` closes the engine's)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.request_timeout_s
        inner = self.stream(req, request_id, tenant, deltas)
        try:
            while True:
                remaining = deadline - loop.time()
                try:
                    if remaining <= 0:
                        raise TimeoutError
                    async with asyncio.timeout(remaining):
                        event = await anext(inner)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise ApiError(
                        ErrorType.TIMEOUT, f"deadline of {self.settings.request_timeout_s:g}s exceeded"
                    ) from None
                yield event
        finally:
            await inner.aclose()

    async def recommend(self, req: RecommendRequest, request_id: str, tenant: str | None = None) -> RecommendResponse:
        return await final(self.bounded(req, request_id, tenant, deltas=False), "pipeline ended without a response")

    @asynccontextmanager
    async def admitted(self) -> AsyncIterator[None]:
        """Hold one admission slot (429 when none is free, 503 when draining or loading) for the block."""
        self.admit()
        try:
            yield
        finally:
            self.release()
