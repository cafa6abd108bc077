"""The result cache: reasoning + user vector per (bundle, rendered prompt, options, tenant). Best effort.

A miss costs a generation, never a failure: with Redis down every lookup is a miss and every store is dropped
(the shared connection reports the outage). Without Redis, an in-process LRU with a TTL. User contexts, which
must not be lost, live in ``service.user_store`` under the opposite contract.
"""

from __future__ import annotations

import abc
import json
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from service.redis_conn import RedisConnection


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


class ResultCache(abc.ABC):
    @abc.abstractmethod
    async def get(self, key: str) -> CachedResult | None: ...

    @abc.abstractmethod
    async def put(self, key: str, value: CachedResult) -> None: ...

    @property
    def healthy(self) -> bool:
        return True


class LocalResultCache(ResultCache):
    def __init__(self, size: int, ttl_s: int):
        self.size = size
        self.ttl_s = ttl_s
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    async def get(self, key: str) -> CachedResult | None:
        hit = self._entries.get(key)
        if hit is None or hit[0] < time.monotonic():
            self._entries.pop(key, None)
            return None
        self._entries.move_to_end(key)
        return CachedResult.loads(hit[1])

    async def put(self, key: str, value: CachedResult) -> None:
        self._entries[key] = (time.monotonic() + self.ttl_s, value.dumps())
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)


class RedisResultCache(ResultCache):
    def __init__(self, conn: RedisConnection, ttl_s: int):
        self.conn = conn
        self.ttl_s = ttl_s

    @property
    def healthy(self) -> bool:
        return self.conn.healthy

    async def get(self, key: str) -> CachedResult | None:
        blob = await self.conn.call("get", self.conn.key("result", key))
        return None if blob is None else CachedResult.loads(blob)

    async def put(self, key: str, value: CachedResult) -> None:
        await self.conn.call("set", self.conn.key("result", key), value.dumps(), self.ttl_s)
