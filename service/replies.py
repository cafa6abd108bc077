"""Whole replies to recommend requests whose reply depends on nothing but their bytes.

The result cache (``service.cache``) keeps reasoning and user vectors, so a repeated request skips generation but
is still parsed, validated, rendered into a prompt and ranked: about 2 ms of CPU, which at 32 concurrent clients
queues into tens of milliseconds. When a request cannot mean anything else the second time (the same tenant, the
same bundle, the same body bytes, deterministic decoding, no stored user context, and a prompt that does not age
with the clock), its complete reply is kept here and the ASGI middleware answers an identical request from it
before the application runs: only the request id and the total time change.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from dataclasses import dataclass

from service.protocol import RecommendRequest, RecommendResponse

# Placeholders no JSON value of a reply can contain (a NUL is always escaped); each stands, quotes included, where
# its value goes.
_RID = json.dumps("\x00request-id\x00").encode()
_TOTAL = json.dumps("\x00total-ms\x00").encode()
STAGES = ("queue_ms", "generation_ms", "capture_ms", "search_ms")
HEADERS = [
    (b"content-type", b"application/json"),
    (b"x-cache", b"hit"),
    (b"x-generation-time-ms", b"0.0"),
    (b"x-capture-time-ms", b"0.0"),
    (b"x-search-time-ms", b"0.00"),
    (b"x-queue-time-ms", b"0.0"),
]


def replayable(req: RecommendRequest, prompt_ages: bool) -> bool:
    """Whether the reply to ``req`` is a function of its bytes: cacheable (deterministic decoding, cache not
    declined), no stored user context (it can change between two identical requests), and no age in the prompt
    that moves with the clock (the templates show none, the request fixes ``as_of``, or no event has a time)."""
    s = req.sampling
    deterministic = s.temperature <= 0.0 or s.seed is not None
    timeless = not prompt_ages or req.as_of is not None or all(e.timestamp is None for e in req.history)
    return req.use_cache and deterministic and req.user_id is None and timeless


@dataclass(frozen=True)
class Reply:
    template: bytes  # the JSON body with placeholders for the request id and the total time
    expires: float

    def body(self, request_id: str, total_ms: float) -> bytes:
        return self.template.replace(_RID, json.dumps(request_id).encode()).replace(_TOTAL, f"{total_ms:.3f}".encode())


class ReplyCache:
    """An in-process LRU of replies with the result cache's TTL (each replica keeps its own)."""

    def __init__(self, size: int, ttl_s: float):
        self.size, self.ttl_s = size, ttl_s
        self._replies: OrderedDict[bytes, Reply] = OrderedDict()

    @staticmethod
    def key(bundle_version: str, tenant: str | None, body: bytes) -> bytes:
        digest = hashlib.sha256(bundle_version.encode())
        digest.update(b"\x00" + (tenant or "").encode() + b"\x00")
        digest.update(body)
        return digest.digest()

    def get(self, key: bytes) -> Reply | None:
        reply = self._replies.get(key)
        if reply is None:
            return None
        if reply.expires < time.monotonic():
            del self._replies[key]
            return None
        self._replies.move_to_end(key)
        return reply

    def put(self, key: bytes, response: RecommendResponse) -> None:
        if self.size <= 0:
            return
        data = response.model_dump(mode="json")
        # What a replay says: served from the cache, no stage ran; the id and total time are filled in per reply.
        data.update(request_id=json.loads(_RID), cached=True)
        data["timings"] = {"total_ms": json.loads(_TOTAL), **dict.fromkeys(STAGES, 0.0)}
        template = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
        self._replies[key] = Reply(template, time.monotonic() + self.ttl_s)
        self._replies.move_to_end(key)
        while len(self._replies) > self.size:
            self._replies.popitem(last=False)

    def __len__(self) -> int:
        return len(self._replies)
