"""User contexts and cached results: Redis when configured, an in-process LRU otherwise.

Redis is a cache and a convenience store, never a single point of failure for ranking: every Redis call is
bounded by a short socket timeout, a failure marks the cache degraded (visible in /ready and /metrics) and the
request carries on uncached; a background probe notices when Redis is back.
"""

from __future__ import annotations

import abc
import asyncio
import json
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from r2ec import logs
from r2ec.catalog import Event
from r2ec.logs import redact as redact_url

log = logs.get(__name__)


class StoreUnavailable(RuntimeError):
    """The user-context store cannot be reached."""


@dataclass
class CachedResult:
    reasoning: str | None
    vector: np.ndarray
    tokens: int
    finish_reason: str | None

    def dumps(self) -> bytes:
        head = json.dumps(
            {"reasoning": self.reasoning, "tokens": self.tokens, "finish_reason": self.finish_reason}
        ).encode()
        return len(head).to_bytes(4, "big") + head + self.vector.astype(np.float32).tobytes()

    @classmethod
    def loads(cls, blob: bytes) -> CachedResult:
        n = int.from_bytes(blob[:4], "big")
        head = json.loads(blob[4 : 4 + n])
        vector = np.frombuffer(blob[4 + n :], dtype=np.float32).copy()
        return cls(head["reasoning"], vector, int(head["tokens"]), head["finish_reason"])


def _event_to_json(e: Event) -> str:
    return json.dumps({"item_id": e.item_id, "timestamp": e.timestamp, "rating": e.rating})


def _event_from_json(s: str | bytes) -> Event:
    d = json.loads(s)
    return Event(str(d["item_id"]), float(d["timestamp"]), None if d.get("rating") is None else float(d["rating"]))


class Cache(abc.ABC):
    kind: str

    @abc.abstractmethod
    async def get_result(self, key: str) -> CachedResult | None: ...

    @abc.abstractmethod
    async def put_result(self, key: str, value: CachedResult) -> None: ...

    @abc.abstractmethod
    async def get_events(self, user_id: str) -> list[Event] | None: ...

    @abc.abstractmethod
    async def set_events(self, user_id: str, events: list[Event]) -> None: ...

    @abc.abstractmethod
    async def append_events(self, user_id: str, events: list[Event]) -> list[Event]: ...

    @abc.abstractmethod
    async def delete_events(self, user_id: str) -> bool: ...

    @property
    def healthy(self) -> bool:
        return True

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def state(self) -> dict[str, Any]:
        return {"kind": self.kind, "healthy": self.healthy}


class LocalCache(Cache):
    kind = "local"

    def __init__(self, size: int, ttl_s: int, events_cap: int):
        self.size = size
        self.ttl_s = ttl_s
        self.events_cap = events_cap
        self._results: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._users: dict[str, list[Event]] = {}

    async def get_result(self, key: str) -> CachedResult | None:
        hit = self._results.get(key)
        if hit is None or hit[0] < time.monotonic():
            self._results.pop(key, None)
            return None
        self._results.move_to_end(key)
        return CachedResult.loads(hit[1])

    async def put_result(self, key: str, value: CachedResult) -> None:
        self._results[key] = (time.monotonic() + self.ttl_s, value.dumps())
        self._results.move_to_end(key)
        while len(self._results) > self.size:
            self._results.popitem(last=False)

    async def get_events(self, user_id: str) -> list[Event] | None:
        events = self._users.get(user_id)
        return None if events is None else list(events)

    async def set_events(self, user_id: str, events: list[Event]) -> None:
        self._users[user_id] = list(events)[-self.events_cap :]

    async def append_events(self, user_id: str, events: list[Event]) -> list[Event]:
        merged = (self._users.get(user_id) or []) + list(events)
        self._users[user_id] = merged[-self.events_cap :]
        return list(self._users[user_id])

    async def delete_events(self, user_id: str) -> bool:
        return self._users.pop(user_id, None) is not None


class RedisCache(Cache):
    kind = "redis"

    def __init__(
        self, url: str, ttl_s: int, events_cap: int, user_ttl_s: int = 0, timeout_s: float = 0.25, prefix: str = "r2ec"
    ):
        import redis.asyncio as aioredis

        self.url = url
        self.ttl_s = ttl_s
        self.events_cap = events_cap
        self.user_ttl_s = user_ttl_s
        self.prefix = prefix
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError

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

    def _ok(self) -> None:
        if not self._healthy:
            log.info("redis available", extra={"url": redact_url(self.url)})
        self._healthy = True
        self._last_error = ""  # a recovered cache reports no old error

    def _failed(self, exc: BaseException) -> None:
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

    @property
    def _marker_key(self) -> str:
        return f"{self.prefix}:store-marker"

    async def ping(self) -> bool:
        try:
            await self.client.ping()
            await self._check_marker()
        except Exception as exc:
            self._failed(exc)
            return False
        self._ok()
        return True

    async def _check_marker(self) -> None:
        if self._marker is None:
            token = f"{time.time():.0f}-{os.getpid()}"
            created = await self.client.set(self._marker_key, token, nx=True)
            value = await self.client.get(self._marker_key)
            self._marker = value.decode() if isinstance(value, bytes) else str(value)
            if created:
                log.info("user store initialised (marker written)", extra={"url": redact_url(self.url)})
            return
        if await self.client.exists(self._marker_key):
            return
        if not self.data_lost:
            log.error(
                "user store lost its data: the marker key is gone (Redis restarted without persistence, "
                "was flushed, or evicted keys)",
                extra={"url": redact_url(self.url)},
            )
        self.data_lost = True
        await self.client.set(self._marker_key, self._marker, nx=True)

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            await self.ping()

    async def _call(self, op: str, *args: Any) -> Any:
        """Run a Redis command; on failure mark degraded and return ``None``."""
        try:
            result = await getattr(self.client, op)(*args)
        except Exception as exc:
            self._failed(exc)
            return None
        self._ok()
        return result

    # -- results ---------------------------------------------------------------------------------------------
    def _rkey(self, key: str) -> str:
        return f"{self.prefix}:result:{key}"

    def _ukey(self, user_id: str) -> str:
        return f"{self.prefix}:user:{user_id}:events"

    async def get_result(self, key: str) -> CachedResult | None:
        blob = await self._call("get", self._rkey(key))
        return None if blob is None else CachedResult.loads(blob)

    async def put_result(self, key: str, value: CachedResult) -> None:
        await self._call("set", self._rkey(key), value.dumps(), self.ttl_s)

    # -- user contexts (the store of record for them: failures raise) ----------------------------------------
    async def _pipeline(self, build: Any) -> list[Any]:
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                build(pipe)
                result: list[Any] = await pipe.execute()
        except Exception as exc:
            self._failed(exc)
            raise StoreUnavailable("user store unavailable") from exc
        self._ok()
        return result

    async def get_events(self, user_id: str) -> list[Event] | None:
        key = self._ukey(user_id)
        exists, raw = await self._pipeline(lambda p: (p.exists(key), p.lrange(key, 0, -1)))
        return [_event_from_json(x) for x in raw] if exists else None

    def _write(self, pipe: Any, key: str, events: list[Event]) -> None:
        if events:
            pipe.rpush(key, *[_event_to_json(e) for e in events])
        pipe.ltrim(key, -self.events_cap, -1)
        if self.user_ttl_s > 0:
            pipe.expire(key, self.user_ttl_s)

    async def set_events(self, user_id: str, events: list[Event]) -> None:
        key = self._ukey(user_id)

        def build(p: Any) -> None:
            p.delete(key)
            self._write(p, key, events)

        await self._pipeline(build)

    async def append_events(self, user_id: str, events: list[Event]) -> list[Event]:
        key = self._ukey(user_id)

        def build(p: Any) -> None:
            self._write(p, key, events)
            p.lrange(key, 0, -1)

        result = await self._pipeline(build)
        return [_event_from_json(x) for x in result[-1]]

    async def delete_events(self, user_id: str) -> bool:
        (deleted,) = await self._pipeline(lambda p: p.delete(self._ukey(user_id)))
        return bool(deleted)
