"""Whole replies of requests whose reply depends only on their bytes: served before the application runs."""

from __future__ import annotations

import json
import time

import httpx

from service.protocol import RecommendRequest
from service.replies import ReplyCache, replayable
from tests.service.conftest import make_server

HISTORY = [{"item_id": "100", "rating": 5, "timestamp": 1_600_000_000}, {"item_id": "101", "timestamp": 1_600_003_600}]


def _req(**kw) -> RecommendRequest:
    return RecommendRequest.model_validate({"history": HISTORY, **kw})


def test_what_can_be_replayed():
    assert replayable(_req(), prompt_ages=False)
    assert replayable(_req(sampling={"temperature": 0.7, "seed": 3}), prompt_ages=False)
    assert not replayable(_req(sampling={"temperature": 0.7}), prompt_ages=False)  # not deterministic
    assert not replayable(_req(use_cache=False), prompt_ages=False)
    assert not replayable(_req(user_id="u1"), prompt_ages=False)  # stored events can change in between
    # prompts with ages: only when they cannot move with the clock
    assert not replayable(_req(), prompt_ages=True)
    assert replayable(_req(as_of=1_700_000_000), prompt_ages=True)
    assert replayable(RecommendRequest.model_validate({"history": [{"item_id": "100"}]}), prompt_ages=True)


def test_reply_cache_is_an_lru_with_a_ttl():
    from service.protocol import RecommendResponse, Timings

    response = RecommendResponse(
        request_id="first", items=[], model="m", bundle_version="v", history_used=1, timings=Timings(total_ms=5.0)
    )
    cache = ReplyCache(size=2, ttl_s=60)
    keys = [cache.key("v", None, f"body {i}".encode()) for i in range(3)]
    assert cache.key("v", "tenant", b"body 0") != keys[0] != cache.key("w", None, b"body 0")
    for key in keys:
        cache.put(key, response)
    assert cache.get(keys[0]) is None and len(cache) == 2  # the oldest went
    body = json.loads(cache.get(keys[2]).body('new "id"', 0.25))  # type: ignore[union-attr]
    assert body["request_id"] == 'new "id"' and body["cached"] is True
    assert body["timings"] == {"total_ms": 0.25, "queue_ms": 0, "generation_ms": 0, "capture_ms": 0, "search_ms": 0}
    short = ReplyCache(size=2, ttl_s=0.01)
    short.put(keys[0], response)
    time.sleep(0.02)
    assert short.get(keys[0]) is None


def _hits(url: str) -> float:
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith('r2ec_cache_lookups_total{outcome="hit"}'):
            return float(line.split()[1])
    return 0.0


def test_an_identical_request_is_replayed_and_others_are_not(tiny_bundle):
    srv = make_server(tiny_bundle, max_reasoning_tokens=64, default_reasoning_tokens=6).start()
    try:
        body = {"history": HISTORY, "k": 4, "as_of": 1_600_010_000}  # the tiny bundle's prompt shows ages
        first = httpx.post(srv.url + "/v1/recommend", json=body, timeout=60)
        hits = _hits(srv.url)
        again = httpx.post(srv.url + "/v1/recommend", json=body, timeout=60, headers={"X-Request-Id": "replay-1"})
        assert again.status_code == 200 and again.headers["x-cache"] == "hit"
        a, b = first.json(), again.json()
        assert b["request_id"] == "replay-1" == again.headers["x-request-id"]
        assert b["cached"] is True and b["timings"]["search_ms"] == 0  # nothing ran: not even the ranking
        assert {k: v for k, v in b.items() if k not in ("request_id", "cached", "timings")} == {
            k: v for k, v in a.items() if k not in ("request_id", "cached", "timings")
        }
        assert _hits(srv.url) == hits + 1
        metrics = httpx.get(srv.url + "/metrics").text
        assert 'r2ec_requests_total{route="/v1/recommend",status="200"} 2.0' in metrics
        # Ages that move with the clock are not replayed, other bytes get another reply, and a stored user
        # context is never replayed (it can change).
        for _ in range(2):
            aging = httpx.post(srv.url + "/v1/recommend", json={"history": HISTORY, "k": 4}, timeout=60).json()
        assert aging["timings"]["search_ms"] > 0
        other = httpx.post(srv.url + "/v1/recommend", json={**body, "k": 2}, timeout=60).json()
        assert len(other["items"]) == 2
        httpx.put(srv.url + "/v1/users/u1/events", json={"events": HISTORY}).raise_for_status()
        for _ in range(2):
            mine = httpx.post(srv.url + "/v1/recommend", json={"user_id": "u1", "k": 4}, timeout=60).json()
        assert mine["cached"] is True and mine["timings"]["search_ms"] > 0  # the result cache, then a ranking
        # Bad input is never replayed into a success.
        bad = httpx.post(srv.url + "/v1/recommend", json={"history": [{"item_id": "nope"}]}, timeout=60)
        assert bad.status_code == 404 or bad.status_code == 422
    finally:
        srv.stop()
