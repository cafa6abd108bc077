"""User contexts (the events of a ``user_id``): the store of record for them. Failures raise.

Redis when configured (compose and k8s run it with AOF on a volume and ``noeviction``; a marker key tells a
Redis that lost its data apart, ``service.redis_conn``), an in-process dict otherwise (lost on restart, as the
README says; at most ``max_users``, the least recently used dropped beyond). Both keep the newest ``events_cap``
events per user and expire a context ``ttl_s`` after its last write when ``ttl_s`` > 0.

A context belongs to a tenant (``service.auth``: the API key's, ``None`` with auth off): the same ``user_id``
under two tenants is two users, and no key reaches another tenant's users.
"""

from __future__ import annotations

import abc
import json
import time
from collections import OrderedDict
from typing import Any

from redis.exceptions import ResponseError

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
    """Every method takes the caller's tenant (``service.auth.request_tenant``; None with auth off): required, so
    that no caller can forget it and reach the tenant-less keys by default."""

    @abc.abstractmethod
    async def get(self, user_id: str, tenant: str | None) -> list[Event] | None: ...

    @abc.abstractmethod
    async def replace(self, user_id: str, events: list[Event], tenant: str | None) -> None: ...

    @abc.abstractmethod
    async def append(self, user_id: str, events: list[Event], tenant: str | None) -> list[Event]: ...

    @abc.abstractmethod
    async def delete(self, user_id: str, tenant: str | None) -> bool: ...


class LocalUserStore(UserStore):
    def __init__(self, events_cap: int, ttl_s: int = 0, max_users: int = 100_000):
        self.events_cap = events_cap
        self.ttl_s = ttl_s
        self.max_users = max(1, max_users)
        self._users: OrderedDict[tuple[str | None, str], tuple[float, list[Event]]] = OrderedDict()

    def _live(self, who: tuple[str | None, str]) -> list[Event] | None:
        entry = self._users.get(who)
        if entry is None:
            return None
        if self.ttl_s > 0 and entry[0] < time.monotonic():
            del self._users[who]
            return None
        self._users.move_to_end(who)
        return entry[1]

    def _write(self, who: tuple[str | None, str], events: list[Event]) -> list[Event]:
        kept = list(events)[-self.events_cap :]
        expires = time.monotonic() + self.ttl_s if self.ttl_s > 0 else float("inf")
        self._users[who] = (expires, kept)
        self._users.move_to_end(who)
        while len(self._users) > self.max_users:
            self._users.popitem(last=False)
        return list(kept)

    async def get(self, user_id: str, tenant: str | None) -> list[Event] | None:
        events = self._live((tenant, user_id))
        return None if events is None else list(events)

    async def replace(self, user_id: str, events: list[Event], tenant: str | None) -> None:
        self._write((tenant, user_id), events)

    async def append(self, user_id: str, events: list[Event], tenant: str | None) -> list[Event]:
        who = (tenant, user_id)
        return self._write(who, (self._live(who) or []) + list(events))

    async def delete(self, user_id: str, tenant: str | None) -> bool:
        who = (tenant, user_id)
        return self._live(who) is not None and self._users.pop(who, None) is not None


def _no_such_key(reply: object) -> bool:
    return isinstance(reply, ResponseError) and "no such key" in str(reply).lower()


class RedisUserStore(UserStore):
    """Keys: ``r2ec:user:<id>:events`` with auth off (the layout of every earlier version), else
    ``r2ec:tenant:<tenant id>:user:<id>:events``; a tenant id holds no ``:`` past its ``n:``/``k:`` kind, so no
    (tenant, user) pair shares a key with another.

    Contexts written before they were kept per tenant sit under the tenant-less key; ``legacy_tenant`` owns
    them. Its every operation folds the old key into the same MULTI: reads and appends move it over (RENAMENX:
    atomic, keeps the TTL, never overwrites), replaces and deletes remove it too, so nothing deleted comes back
    from an old key a not-yet-upgraded replica wrote meanwhile."""

    def __init__(self, conn: RedisConnection, events_cap: int, ttl_s: int = 0, legacy_tenant: str | None = None):
        self.conn = conn
        self.events_cap = events_cap
        self.ttl_s = ttl_s
        self.legacy_tenant = legacy_tenant

    def _key(self, user_id: str, tenant: str | None) -> str:
        if tenant is None:
            return self.conn.key("user", user_id, "events")
        return self.conn.key("tenant", tenant, "user", user_id, "events")

    def _legacy(self, user_id: str, tenant: str | None) -> str | None:
        """The tenant-less key this tenant adopts (None unless it is the legacy tenant)."""
        return self._key(user_id, None) if tenant is not None and tenant == self.legacy_tenant else None

    async def _pipeline(self, build: Any) -> list[Any]:
        """The MULTI's replies; an error reply other than RENAMENX's "no such key" (nothing to adopt) fails it."""
        try:
            replies = await self.conn.pipeline(build, raise_on_error=False)
        except Exception as exc:
            raise StoreUnavailable("user store unavailable") from exc
        for reply in replies:
            if isinstance(reply, Exception) and not _no_such_key(reply):
                raise StoreUnavailable("user store unavailable") from reply
        return replies

    def _write(self, pipe: Any, key: str, events: list[Event]) -> None:
        if events:
            pipe.rpush(key, *[_event_to_json(e) for e in events])
        pipe.ltrim(key, -self.events_cap, -1)
        if self.ttl_s > 0:
            pipe.expire(key, self.ttl_s)

    async def get(self, user_id: str, tenant: str | None) -> list[Event] | None:
        key, old = self._key(user_id, tenant), self._legacy(user_id, tenant)

        def build(p: Any) -> None:
            if old is not None:
                p.renamenx(old, key)
            p.exists(key)
            p.lrange(key, 0, -1)

        *_, exists, raw = await self._pipeline(build)
        return [_event_from_json(x) for x in raw] if exists else None

    async def replace(self, user_id: str, events: list[Event], tenant: str | None) -> None:
        key, old = self._key(user_id, tenant), self._legacy(user_id, tenant)

        def build(p: Any) -> None:
            p.delete(key, *([old] if old is not None else []))
            self._write(p, key, events)

        await self._pipeline(build)

    async def append(self, user_id: str, events: list[Event], tenant: str | None) -> list[Event]:
        key, old = self._key(user_id, tenant), self._legacy(user_id, tenant)

        def build(p: Any) -> None:
            if old is not None:
                p.renamenx(old, key)
            self._write(p, key, events)
            p.lrange(key, 0, -1)

        result = await self._pipeline(build)
        return [_event_from_json(x) for x in result[-1]]

    async def delete(self, user_id: str, tenant: str | None) -> bool:
        key, old = self._key(user_id, tenant), self._legacy(user_id, tenant)
        (deleted,) = await self._pipeline(lambda p: p.delete(key, *([old] if old is not None else [])))
        return bool(deleted)
