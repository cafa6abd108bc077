"""Redis outages degrade the service (uncached, /ready says so) and never fail a request; it recovers."""

from __future__ import annotations

import time

import httpx
import numpy as np

from loadtests.launcher import RedisServer
from r2ec.catalog import Event
from service.cache import CachedResult, LocalResultCache
from service.user_store import LocalUserStore
from tests.helpers import free_port
from tests.service.conftest import make_server

BODY = {"history": [{"item_id": "103", "rating": 4, "timestamp": 1_600_000_000}], "k": 3, "max_reasoning_tokens": 4}


RedisProcess = RedisServer  # a real redis-server of the test's own, stoppable without touching the machine's one


def _wait(cond, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.2)
    return False


def test_redis_stopped_mid_test_degrades_then_recovers(tiny_bundle):
    redis_proc = RedisProcess()
    redis_proc.start()
    srv = make_server(tiny_bundle, redis_url=redis_proc.url).start()
    try:
        url = srv.url + "/v1/recommend"
        assert httpx.post(url, json=BODY, timeout=60).json()["cached"] is False
        assert httpx.post(url, json=BODY, timeout=60).json()["cached"] is True

        redis_proc.stop()
        r = httpx.post(url, json={**BODY, "k": 4}, timeout=60)
        assert r.status_code == 200 and r.json()["cached"] is False  # served, uncached
        assert _wait(lambda: httpx.get(srv.url + "/ready").json()["cache"]["status"] == "degraded")
        ready = httpx.get(srv.url + "/ready")
        assert ready.status_code == 200  # still serving traffic
        assert "r2ec_cache_up 0.0" in httpx.get(srv.url + "/metrics").text
        users = httpx.get(srv.url + "/v1/users/zed/events")
        assert users.status_code == 503 and users.json()["error"]["type"] == "dependency_unavailable"
        with_user = httpx.post(url, json={**BODY, "user_id": "zed"}, timeout=60)
        assert with_user.status_code == 200  # stored context unavailable: ranks on the history sent

        redis_proc.start()  # same port, and empty: this Redis keeps nothing on disk
        assert _wait(lambda: httpx.get(srv.url + "/ready").json()["cache"]["healthy"] is True)
        assert httpx.get(srv.url + "/ready").json()["cache"]["status"] == "data_lost"  # told apart from healthy
        assert httpx.post(url, json=BODY, timeout=60).json()["cached"] is False  # the old entry died with Redis
        assert httpx.post(url, json=BODY, timeout=60).json()["cached"] is True  # caching resumed
        assert "r2ec_cache_up 1.0" in httpx.get(srv.url + "/metrics").text
    finally:
        srv.stop()
        redis_proc.stop()


def test_redis_down_at_startup_still_serves(tiny_bundle):
    srv = make_server(tiny_bundle, redis_url=f"redis://127.0.0.1:{free_port()}/0").start()
    try:
        assert httpx.post(srv.url + "/v1/recommend", json=BODY, timeout=60).status_code == 200
        assert httpx.get(srv.url + "/ready").json()["cache"]["status"] == "degraded"
    finally:
        srv.stop()


async def test_local_result_cache_is_an_lru_with_a_ttl():
    cache = LocalResultCache(size=2, ttl_s=60)
    v = CachedResult("why", np.ones(4, dtype=np.float32), 5, "answer")
    for key in ("a", "b", "c"):
        await cache.put(key, v)
    assert await cache.get("a") is None  # evicted
    hit = await cache.get("c")
    assert hit is not None and hit.reasoning == "why" and hit.vector.tolist() == [1.0] * 4
    expired = LocalResultCache(size=2, ttl_s=0)
    await expired.put("a", v)
    time.sleep(0.01)
    assert await expired.get("a") is None


async def test_local_user_store_caps_events_and_honours_its_ttl():
    store = LocalUserStore(events_cap=3)
    events = await store.append("u", [Event(str(i), float(i)) for i in range(5)], None)
    assert [e.item_id for e in events] == ["2", "3", "4"]
    assert await store.delete("u", None) and not await store.delete("u", None)
    short = LocalUserStore(events_cap=3, ttl_s=1)
    await short.replace("u", [Event("1", 1.0)], None)
    assert await short.get("u", None) is not None
    short._users[(None, "u")] = (time.monotonic() - 1, short._users[(None, "u")][1])  # as if its ttl had passed
    assert await short.get("u", None) is None and not await short.delete("u", None)


async def test_local_user_store_keeps_tenants_apart_and_is_bounded():
    store = LocalUserStore(events_cap=3, max_users=2)
    await store.replace("u", [Event("1", 1.0)], tenant="n:acme")
    assert await store.get("u", None) is None and await store.get("u", tenant="n:globex") is None
    assert not await store.delete("u", tenant="n:globex")
    assert [e.item_id for e in await store.get("u", tenant="n:acme") or []] == ["1"]
    await store.replace("v", [Event("2", 2.0)], tenant="n:acme")
    await store.get("u", tenant="n:acme")  # u is now the most recently used: w pushes out v
    await store.replace("w", [Event("3", 3.0)], tenant="n:acme")
    assert await store.get("v", tenant="n:acme") is None
    assert await store.get("u", tenant="n:acme") is not None and await store.get("w", tenant="n:acme") is not None


def test_ready_sees_an_outage_without_any_traffic(tiny_bundle):
    """The cache is probed on its own schedule: no request has to hit Redis for /ready to notice."""
    redis_proc = RedisProcess()
    redis_proc.start()
    srv = make_server(tiny_bundle, redis_url=redis_proc.url).start()
    try:
        assert httpx.get(srv.url + "/ready").json()["cache"]["status"] == "ok"
        redis_proc.stop()
        started = time.monotonic()
        assert _wait(lambda: httpx.get(srv.url + "/ready").json()["cache"]["status"] == "degraded")
        assert time.monotonic() - started < 10
        redis_proc.start()
        assert _wait(lambda: httpx.get(srv.url + "/ready").json()["cache"]["healthy"] is True)
        assert httpx.get(srv.url + "/ready").json()["cache"].get("last_error") is None  # no stale error after recovery
    finally:
        srv.stop()
        redis_proc.stop()
