"""Shared state on ``app.state``, reached through small accessors."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import Request

from r2ec.bundle import Bundle
from r2ec.engine.base import Engine
from r2ec.engine.selection import Selection
from r2ec.recommender import Recommender
from service.cache import ResultCache
from service.metrics import Metrics
from service.redis_conn import RedisConnection
from service.replies import ReplyCache
from service.settings import Settings
from service.user_store import UserStore

if TYPE_CHECKING:
    from service.serving import RecommendService


@dataclass
class ServiceState:
    settings: Settings
    metrics: Metrics
    bundle: Bundle | None = None
    engine: Engine | None = None
    recommender: Recommender | None = None
    results: ResultCache | None = None  # best effort
    replies: ReplyCache | None = None  # whole replies of requests that depend only on their bytes
    users: UserStore | None = None  # store of record
    redis: RedisConnection | None = None  # shared by both when configured
    draining: bool = False
    inflight: int = 0
    startup_error: str | None = None
    index_placement: dict[str, str] | None = None
    selection: Selection | None = None  # the engine that serves, and what was tried before it
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    def store_state(self) -> dict[str, Any]:
        """What /ready and /metrics report about the cache and the user store."""
        if self.redis is not None:
            return self.redis.state()
        return {"kind": "local" if self.users is not None else None, "healthy": self.users is not None}

    @property
    def dtype(self) -> str | None:
        """The dtype the engine runs in (None before one started)."""
        return self.selection.dtype if self.selection is not None else None

    @property
    def backend(self) -> str:
        """The backend that serves; before one started, the one asked for (auto included)."""
        return self.selection.backend if self.selection is not None else self.settings.backend

    @property
    def default_reasoning_tokens(self) -> int:
        """The flag if given, else the bundle's recorded reasoning budget (never above the cap)."""
        if self.settings.default_reasoning_tokens is not None:
            value = self.settings.default_reasoning_tokens
        else:
            value = self.bundle.generation.max_reasoning_tokens if self.bundle is not None else 128
        return min(value, self.max_reasoning_tokens)

    @property
    def max_reasoning_tokens(self) -> int:
        """The flag's cap, bounded by the context: prompt (user_max_tokens) + reasoning must fit max_model_len."""
        prompt = self.bundle.templates.user_max_tokens if self.bundle is not None else 2048
        return max(1, min(self.settings.max_reasoning_tokens, self.settings.max_model_len - min(prompt, 2048)))

    @property
    def ready(self) -> bool:
        return not self.draining and self.recommender is not None and self.engine is not None and self.engine.ready


def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.r2ec
    return state


def get_service(request: Request) -> RecommendService:
    """The one ``RecommendService`` of the app, built with its state."""
    service: RecommendService = request.app.state.r2ec_service
    return service
