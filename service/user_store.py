"""User contexts (the events of a ``user_id``): the store of record for them. Failures raise.

Redis when configured (compose and k8s run it with AOF on a volume and ``noeviction``; a marker key tells a
Redis that lost its data apart, ``service.redis_conn``), an in-process dict otherwise (lost on restart, as the
README says). Both keep the newest ``events_cap`` events per user and expire a context ``ttl_s`` after its last
write when ``ttl_s`` > 0.
"""

from __future__ import annotations

import abc
import json
import time
from typing import Any

from r2ec.catalog import Event
from service.redis_conn import RedisConnection


class StoreUnavailable(RuntimeError):
    """The user-context store cannot be reached."""


def _event_to_json(e: Event) -> str:
    return json.dumps({"item_id": e.item_id, "timestamp": e.timestamp, "rating": e.rating})


def _event_from_json(s: str | bytes) -> Event:
    d = json.loads(s)
    return Event(str(d["item_id"]), float(d["timestamp"]), None if d.get("rating") is None else float(d["rating"]))


class UserStore(abc.ABC):
    @abc.abstractmethod
    async def get(self, user_id: str) -> list[Event] | None: ...

    @abc.abstractmethod
    async def replace(self, user_id: str, events: list[Event]) -> None: ...

    @abc.abstractmethod
    async def append(self, user_id: str, events: list[Event]) -> list[Event]: ...

    @abc.abstractmethod
    async def delete(self, user_id: str) -> bool: ...


class LocalUserStore(UserStore):
    def __init__(self, events_cap: int, ttl_s: int = 0):
        self.events_cap = events_cap
        self.ttl_s = ttl_s
        self._users: dict[str, tuple[float, list[Event]]] = {}

    def _live(self, user_id: str) -> list[Event] | None:
        entry = self._users.get(user_id)
        if entry is None:
            return None
        if self.ttl_s > 0 and entry[0] < time.monotonic():
            del self._users[user_id]
            return None
        return entry[1]

    def _write(self, user_id: str, events: list[Event]) -> list[Event]:
        kept = list(events)[-self.events_cap :]
        expires = time.monotonic() + self.ttl_s if self.ttl_s > 0 else float("inf")
        self._users[user_id] = (expires, kept)
        return list(kept)

    async def get(self, user_id: str) -> list[Event] | None:
        events = self._live(user_id)
        return None if events is None else list(events)

    async def replace(self, user_id: str, events: list[Event]) -> None:
        self._write(user_id, events)

    async def append(self, user_id: str, events: list[Event]) -> list[Event]:
        return self._write(user_id, (self._live(user_id) or []) + list(events))

    async def delete(self, user_id: str) -> bool:
        return self._live(user_id) is not None and self._users.pop(user_id, None) is not None


class RedisUserStore(UserStore):
    def __init__(self, conn: RedisConnection, events_cap: int, ttl_s: int = 0):
        self.conn = conn
        self.events_cap = events_cap
        self.ttl_s = ttl_s

    def _key(self, user_id: str) -> str:
        return self.conn.key("user", user_id, "events")

    async def _pipeline(self, build: Any) -> list[Any]:
        try:
            return await self.conn.pipeline(build)
        except Exception as exc:
            raise StoreUnavailable("user store unavailable") from exc

    def _write(self, pipe: Any, key: str, events: list[Event]) -> None:
        if events:
            pipe.rpush(key, *[_event_to_json(e) for e in events])
        pipe.ltrim(key, -self.events_cap, -1)
        if self.ttl_s > 0:
            pipe.expire(key, self.ttl_s)

    async def get(self, user_id: str) -> list[Event] | None:
        key = self._key(user_id)
        exists, raw = await self._pipeline(lambda p: (p.exists(key), p.lrange(key, 0, -1)))
        return [_event_from_json(x) for x in raw] if exists else None

    async def replace(self, user_id: str, events: list[Event]) -> None:
        key = self._key(user_id)

        def build(p: Any) -> None:
            p.delete(key)
            self._write(p, key, events)

        await self._pipeline(build)

    async def append(self, user_id: str, events: list[Event]) -> list[Event]:
        key = self._key(user_id)

        def build(p: Any) -> None:
            self._write(p, key, events)
            p.lrange(key, 0, -1)

        result = await self._pipeline(build)
        return [_event_from_json(x) for x in result[-1]]

    async def delete(self, user_id: str) -> bool:
        (deleted,) = await self._pipeline(lambda p: p.delete(self._key(user_id)))
        return bool(deleted)
