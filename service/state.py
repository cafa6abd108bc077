"""Shared state on ``app.state``, reached through small accessors."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from fastapi import Request

from model_export.bundle import Bundle
from r2ec.engine.base import Engine
from r2ec.recommender import Recommender
from service.cache import Cache
from service.metrics import Metrics
from service.settings import Settings


@dataclass
class ServiceState:
    settings: Settings
    metrics: Metrics
    bundle: Bundle | None = None
    engine: Engine | None = None
    recommender: Recommender | None = None
    cache: Cache | None = None
    draining: bool = False
    inflight: int = 0
    startup_error: str | None = None
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def ready(self) -> bool:
        return not self.draining and self.recommender is not None and self.engine is not None and self.engine.ready


def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.r2ec
    return state
