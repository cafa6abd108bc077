"""One Redis connection shared by the result cache and the user store: bounded calls, health, data-loss marker.

Every call is bounded by a short socket timeout; a failure marks the connection degraded (visible in /ready and
/metrics) and a background probe notices when Redis is back. What a failure means is the caller's contract: the
result cache carries on uncached (``call`` returns None), the user store refuses (``pipeline`` raises).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from r2ec import logs
from r2ec.logs import redact as redact_url

log = logs.get(__name__)


class RedisConnection:
    kind = "redis"

    def __init__(self, url: str, timeout_s: float = 0.25, prefix: str = "r2ec"):
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError

        self.url = url
        self.prefix = prefix
        self.client = aioredis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry_on_timeout=False,  # a slow Redis degrades at once, it is not waited for twice
            # A pooled connection that died with a restarted Redis is retried once on a fresh one, so the first
            # request after a restart is not the one that pays for it.
            retry=Retry(NoBackoff(), 1),
            retry_on_error=[RedisConnectionError],
            health_check_interval=0,
        )
        self._healthy = False
        self._last_error = ""
        self._probe: asyncio.Task[None] | None = None
        # Data-loss detection: a marker key written once; if it disappears while we run, Redis lost its data
        # (restarted without its AOF, flushed, or evicted despite the shipped noeviction). Sticky until restart.
        self._marker: str | None = None
        self.data_lost = False

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # -- health ----------------------------------------------------------------------------------------------
    @property
    def healthy(self) -> bool:
        return self._healthy

    def state(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "healthy": self._healthy,
            "data_lost": self.data_lost,
            "last_error": self._last_error or None,
        }

    def ok(self) -> None:
        if not self._healthy:
            log.info("redis available", extra={"url": redact_url(self.url)})
        self._healthy = True
        self._last_error = ""  # a recovered connection reports no old error

    def failed(self, exc: BaseException) -> None:
        if self._healthy:
            log.warning("redis unavailable; serving uncached", extra={"url": redact_url(self.url), "error": repr(exc)})
        self._healthy = False
        # Clients and /ready see the kind of failure only; addresses and messages stay in the log.
        self._last_error = type(exc).__name__

    async def start(self) -> None:
        await self.ping()
        self._probe = asyncio.create_task(self._probe_loop())

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
        await self.client.aclose()

    async def ping(self) -> bool:
        try:
            await self.client.ping()
            await self._check_marker()
        except Exception as exc:
            self.failed(exc)
            return False
        self.ok()
        return True

    async def _check_marker(self) -> None:
        marker_key = self.key("store-marker")
        if self._marker is None:
            token = f"{time.time():.0f}-{os.getpid()}"
            created = await self.client.set(marker_key, token, nx=True)
            value = await self.client.get(marker_key)
            self._marker = value.decode() if isinstance(value, bytes) else str(value)
            if created:
                log.info("user store initialised (marker written)", extra={"url": redact_url(self.url)})
            return
        if await self.client.exists(marker_key):
            return
        if not self.data_lost:
            log.error(
                "user store lost its data: the marker key is gone (Redis restarted without persistence, "
                "was flushed, or evicted keys)",
                extra={"url": redact_url(self.url)},
            )
        self.data_lost = True
        await self.client.set(marker_key, self._marker, nx=True)

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            await self.ping()

    # -- calls -----------------------------------------------------------------------------------------------
    async def call(self, op: str, *args: Any) -> Any:
        """Run a Redis command; on failure mark degraded and return ``None`` (best effort)."""
        try:
            result = await getattr(self.client, op)(*args)
        except Exception as exc:
            self.failed(exc)
            return None
        self.ok()
        return result

    async def pipeline(self, build: Any, raise_on_error: bool = True) -> list[Any]:
        """Run a transaction built by ``build(pipe)``; on failure mark degraded and re-raise. With
        ``raise_on_error`` False a command's error reply comes back in its place in the result instead."""
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                build(pipe)
                result: list[Any] = await pipe.execute(raise_on_error=raise_on_error)
        except Exception as exc:
            self.failed(exc)
            raise
        self.ok()
        return result
