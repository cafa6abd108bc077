"""One bad request never hurts another; dependencies degrade, never crash; nothing leaks; nothing is lost
silently. Every test drives the real server over HTTP (real Redis where one is involved)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.service.conftest import make_server
from tests.service.test_cache import RedisProcess, _wait

OK = {"history": [{"item_id": "100", "rating": 4}], "k": 2, "reasoning": False}
ROOT = Path(__file__).resolve().parents[2]


def _err(r, status, type_):
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert body["type"] == type_ and body["message"] and body["request_id"]
    return body


def _idle(url: str) -> bool:
    ready = httpx.get(url + "/ready").json()
    return ready["inflight"] == 0 and ready["engine"]["running"] == 0


# 1 -------------------------------------------------------------------------------------------------------------
def test_one_bad_row_never_fails_its_batch(tiny_bundle):
    srv = make_server(tiny_bundle, max_batch=8, batch_wait_ms=200).start()
    try:
        good = {"history": [{"item_id": "101"}], "k": 2, "max_reasoning_tokens": 12, "use_cache": False}
        sampled = {**good, "sampling": {"temperature": 1.0, "top_p": 0.9, "seed": 3}}
        bad = {**good, "sampling": {"temperature": 1e-300}}

        async def run() -> tuple:
            async with httpx.AsyncClient(base_url=srv.url, timeout=60) as c:

                async def stream() -> tuple[int, str]:
                    async with c.stream("POST", "/v1/recommend/stream", json=good) as r:
                        return r.status_code, (await r.aread()).decode()

                return await asyncio.gather(
                    c.post("/v1/recommend", json=good),
                    c.post("/v1/recommend", json=sampled),
                    c.post("/v1/recommend", json=bad),
                    stream(),
                )

        ok1, ok2, rejected, (sse_status, sse) = asyncio.run(run())
        assert ok1.status_code == 200 and ok2.status_code == 200
        assert _err(rejected, 422, "validation_error")["field"] == "sampling.temperature"
        assert sse_status == 200 and "data: [DONE]" in sse and "event: error" not in sse
        assert _wait(lambda: _idle(srv.url))
    finally:
        srv.stop()


def test_engine_fails_only_the_row_that_cannot_be_sampled(tiny_model_dir, smollm_tokenizer):
    """Below the API (which refuses such input), the engine itself isolates a row whose sampling blows up."""
    from r2ec.engine.base import GenerationOptions, InvalidRequest
    from r2ec.engine.hf import TransformersEngine
    from r2ec.engine.settings import EngineSettings

    async def run() -> list:
        engine = TransformersEngine(tiny_model_dir, smollm_tokenizer, EngineSettings(max_batch=4, batch_wait_ms=300))
        await engine.start()
        try:
            prompt = smollm_tokenizer("hello there")["input_ids"]
            jobs = [
                engine.generate(prompt, GenerationOptions(max_tokens=6), "a"),
                engine.generate(prompt, GenerationOptions(max_tokens=6, temperature=1e-300, seed=1), "bad"),
                engine.generate(prompt, GenerationOptions(max_tokens=6, temperature=1.0, seed=2), "c"),
            ]
            return await asyncio.gather(*jobs, return_exceptions=True)
        finally:
            await engine.close()

    a, bad, c = asyncio.run(run())
    assert isinstance(bad, InvalidRequest)
    assert a.num_tokens == 6 and c.num_tokens == 6


# 2 -------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"as_of": 9e13}, "as_of"),
        ({"as_of": 1e300}, "as_of"),
        ({"as_of": False}, "as_of"),
        ({"k": "3"}, "k"),
        ({"k": True}, "k"),
        ({"k": 3.0}, "k"),
        ({"reasoning": "false"}, "reasoning"),
        ({"history": [{"item_id": "100", "timestamp": 1e300}]}, "history[0].timestamp"),
    ],
)
def test_numbers_are_finite_bounded_and_strictly_typed(server, patch, field):
    r = httpx.post(server.url + "/v1/recommend", json={**OK, **patch}, timeout=30)
    assert _err(r, 422, "validation_error")["field"] == field


@pytest.mark.parametrize("literal", ["Infinity", "NaN", "-Infinity"])
def test_non_finite_json_numbers_are_refused(server, literal):
    for body in (
        '{"history": [{"item_id": "100"}], "as_of": X}'.replace("X", literal),
        '{"history": [{"item_id": "100", "timestamp": X}]}'.replace("X", literal),
    ):
        r = httpx.post(server.url + "/v1/recommend", content=body, headers={"content-type": "application/json"})
        _err(r, 422, "validation_error")
    r = httpx.put(
        server.url + "/v1/users/inf/events",
        content='{"events": [{"item_id": "100", "timestamp": X}]}'.replace("X", literal),
        headers={"content-type": "application/json"},
    )
    _err(r, 422, "validation_error")
    assert httpx.get(server.url + "/v1/users/inf/events").status_code == 404  # nothing stored


def test_large_but_valid_ages_do_not_overflow(server):
    r = httpx.post(server.url + "/v1/recommend", json={**OK, "as_of": 2.5e11}, timeout=30)
    assert r.status_code == 200, r.text


# 3 -------------------------------------------------------------------------------------------------------------
def test_sse_honours_the_request_deadline(tiny_bundle):
    srv = make_server(tiny_bundle, request_timeout_s=2, max_model_len=8192, max_reasoning_tokens=4000).start()
    try:
        body = {"history": [{"item_id": "100"}], "max_reasoning_tokens": 4000, "use_cache": False}
        started = time.monotonic()
        with httpx.stream("POST", srv.url + "/v1/recommend/stream", json=body, timeout=60) as r:
            text = r.read().decode()
        assert time.monotonic() - started < 6
        assert "event: error" in text
        data = json.loads(text.split("event: error\ndata: ")[1].split("\n")[0])
        assert data["error"]["type"] == "timeout" and data["error"]["request_id"]
        assert _wait(lambda: _idle(srv.url))
    finally:
        srv.stop()


# 6 -------------------------------------------------------------------------------------------------------------
def test_unary_client_that_hangs_up_frees_its_slot(tiny_bundle):
    srv = make_server(tiny_bundle, max_queue=4, max_model_len=8192, max_reasoning_tokens=4000).start()
    try:
        body = {"history": [{"item_id": "100"}], "max_reasoning_tokens": 4000, "use_cache": False}

        async def hang_up() -> None:
            async with httpx.AsyncClient(base_url=srv.url) as c:
                tasks = [asyncio.ensure_future(c.post("/v1/recommend", json=body, timeout=60)) for _ in range(4)]
                await asyncio.sleep(1.5)
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run(hang_up())
        assert _wait(lambda: _idle(srv.url))  # every generation aborted, every slot back
        assert httpx.post(srv.url + "/v1/recommend", json=OK, timeout=60).status_code == 200
        assert "r2ec_client_disconnects_total 4.0" in httpx.get(srv.url + "/metrics").text
    finally:
        srv.stop()


# 7 -------------------------------------------------------------------------------------------------------------
def test_no_secrets_or_internals_leak(tiny_bundle, caplog):
    port = RedisProcess().port  # nothing listens there
    url = f"redis://:hunter2@127.0.0.1:{port}/0"
    with caplog.at_level(logging.INFO):
        srv = make_server(tiny_bundle, redis_url=url).start()
        try:
            r = httpx.get(srv.url + "/v1/users/zed/events")
            err = _err(r, 503, "dependency_unavailable")
            assert "127.0.0.1" not in err["message"] and str(port) not in err["message"]
            info = httpx.get(srv.url + "/info").text
            assert str(tiny_bundle) not in info and "/tmp" not in info
            ready = httpx.get(srv.url + "/ready").json()
            assert str(port) not in json.dumps(ready)
        finally:
            srv.stop()
    from r2ec.logs import JsonFormatter

    lines = [JsonFormatter().format(rec) for rec in caplog.records]
    assert lines and not any("hunter2" in line for line in lines)


# 8 -------------------------------------------------------------------------------------------------------------
def test_ready_tells_a_redis_that_lost_its_data(tiny_bundle):
    redis_proc = RedisProcess()  # no persistence: a restart loses everything
    redis_proc.start()
    srv = make_server(tiny_bundle, redis_url=redis_proc.url).start()
    try:
        assert httpx.put(srv.url + "/v1/users/ann/events", json={"events": [{"item_id": "100"}]}).status_code == 200
        assert httpx.get(srv.url + "/ready").json()["cache"]["status"] == "ok"
        redis_proc.stop()
        redis_proc.start()  # same port, empty
        assert _wait(lambda: httpx.get(srv.url + "/ready").json()["cache"]["status"] == "data_lost")
        assert "r2ec_user_store_data_lost 1.0" in httpx.get(srv.url + "/metrics").text
    finally:
        srv.stop()
        redis_proc.stop()


def test_shipped_redis_config_keeps_acknowledged_events_across_a_restart(tiny_bundle, tmp_path):
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    args = compose["services"]["redis"]["command"][1:]
    args[args.index("--dir") + 1] = str(tmp_path)
    redis_proc = RedisProcess(args)
    redis_proc.start()
    srv = make_server(tiny_bundle, redis_url=redis_proc.url).start()
    try:
        for i in range(20):
            r = httpx.post(srv.url + f"/v1/users/u{i}/events", json={"events": [{"item_id": str(100 + i)}]})
            assert r.status_code == 200
        time.sleep(1.5)  # appendfsync everysec
        redis_proc.stop()
        redis_proc.start()
        assert _wait(lambda: httpx.get(srv.url + "/ready").json()["cache"]["status"] == "ok")
        for i in range(20):
            r = httpx.get(srv.url + f"/v1/users/u{i}/events")
            assert r.status_code == 200 and r.json()["events"][0]["item_id"] == str(100 + i)
        assert httpx.get(srv.url + "/ready").json()["cache"]["data_lost"] is False
    finally:
        srv.stop()
        redis_proc.stop()


# 9 -------------------------------------------------------------------------------------------------------------
def test_requests_without_timestamps_are_cached(server):
    body = {"history": [{"item_id": "100"}, {"item_id": "101", "rating": 3}], "k": 3, "max_reasoning_tokens": 6}
    first = httpx.post(server.url + "/v1/recommend", json=body, timeout=60)
    time.sleep(1.1)  # the request time moves on; the prompt (ages 0) does not
    second = httpx.post(server.url + "/v1/recommend", json=body, timeout=60)
    assert first.json()["cached"] is False and second.json()["cached"] is True
    assert second.headers["x-cache"] == "hit"


# 10 ------------------------------------------------------------------------------------------------------------
def test_auth_comes_before_body_parsing_and_the_cache_is_per_tenant(tiny_bundle):
    srv = make_server(tiny_bundle, api_keys=["alpha", "beta"]).start()
    try:
        r = httpx.post(srv.url + "/v1/recommend", content="{not json", headers={"content-type": "application/json"})
        _err(r, 401, "unauthorized")
        body = {"history": [{"item_id": "100"}], "k": 2, "max_reasoning_tokens": 4}
        a = {"Authorization": "Bearer alpha"}
        b = {"Authorization": "Bearer beta"}
        assert httpx.post(srv.url + "/v1/recommend", json=body, headers=a, timeout=60).json()["cached"] is False
        assert httpx.post(srv.url + "/v1/recommend", json=body, headers=a, timeout=60).json()["cached"] is True
        other = httpx.post(srv.url + "/v1/recommend", json=body, headers=b, timeout=60)
        assert other.json()["cached"] is False and other.headers["x-cache"] == "miss"  # nothing learnt about alpha
        # Two keys in one request: the auth check and the route would each have read one; refused, whichever order.
        for two in ([("Authorization", "Bearer alpha"), ("Authorization", "Bearer beta")], [*b.items(), *a.items()]):
            _err(httpx.post(srv.url + "/v1/recommend", json=body, headers=two, timeout=60), 400, "bad_request")
    finally:
        srv.stop()


def test_user_contexts_belong_to_the_tenant_of_the_key(tiny_bundle):
    """No key reaches another tenant's users (read, replace, delete, rank from them); the keys of one named tenant
    (a rotation) share its users; contexts stored before tenants move to the legacy tenant at their first read."""
    import redis

    redis_proc = RedisProcess()
    redis_proc.start()
    legacy = redis.Redis.from_url(redis_proc.url)
    old = [json.dumps({"item_id": "102", "timestamp": 1.0, "rating": 5.0})]
    legacy.rpush("r2ec:user:old-user:events", *old)
    named = ["acme:a-old", "acme:a-new", "globex:g1"]
    srv = make_server(
        tiny_bundle, api_keys=["bare-key"], tenant_keys=named, redis_url=redis_proc.url, legacy_user_tenant="acme"
    ).start()
    try:
        a_old, a_new, g, bare = ({"Authorization": f"Bearer {k.partition(':')[2] or k}"} for k in [*named, "bare-key"])
        url = srv.url + "/v1/users/shared-id/events"
        events = {"events": [{"item_id": "100", "rating": 5, "timestamp": 1_600_000_000}]}
        assert httpx.put(url, json=events, headers=a_old).status_code == 200
        assert httpx.get(url, headers=a_new).json()["events"][0]["item_id"] == "100"  # the same tenant
        for other in (g, bare):
            _err(httpx.get(url, headers=other), 404, "not_found")
            _err(httpx.delete(url, headers=other), 404, "not_found")
            ranked = {"user_id": "shared-id", "k": 2, "reasoning": False}
            _err(httpx.post(srv.url + "/v1/recommend", json=ranked, headers=other, timeout=60), 404, "not_found")
        # Another tenant's write makes its own user of the same id; acme's is untouched.
        other_events = {"events": [{"item_id": "101", "timestamp": 1_600_000_000}]}
        assert httpx.post(url, json=other_events, headers=g).json()["events"][0]["item_id"] == "101"
        assert [e["item_id"] for e in httpx.get(url, headers=a_old).json()["events"]] == ["100"]
        # A context of before: unreachable for other tenants, adopted by the legacy one at its first read.
        legacy_url = srv.url + "/v1/users/old-user/events"
        _err(httpx.get(legacy_url, headers=g), 404, "not_found")
        assert [e["item_id"] for e in httpx.get(legacy_url, headers=a_new).json()["events"]] == ["102"]
        assert legacy.exists("r2ec:user:old-user:events") == 0
        _err(httpx.get(legacy_url, headers=g), 404, "not_found")
        # An old-layout key written after adoption (a replica not yet upgraded) never outlives a delete.
        legacy.rpush("r2ec:user:old-user:events", *old)
        assert httpx.delete(legacy_url, headers=a_old).status_code == 204
        assert legacy.exists("r2ec:user:old-user:events") == 0
        _err(httpx.get(legacy_url, headers=a_old), 404, "not_found")
    finally:
        srv.stop()
        redis_proc.stop()


def test_small_contract_items(server):
    _err(httpx.put(server.url + "/v1/users/empty/events", json={"events": []}), 422, "validation_error")
    assert httpx.get(server.url + "/v1/users/empty/events").status_code == 404
    _err(httpx.get(server.url + "/v1/recommend"), 405, "method_not_allowed")
    spec = httpx.get(server.url + "/openapi.json").json()
    assert "404" in spec["paths"]["/v1/items/{item_id}"]["get"]["responses"]
    assert "404" in spec["paths"]["/v1/users/{user_id}/events"]["get"]["responses"]
    assert "503" in spec["paths"]["/ready"]["get"]["responses"]
    assert "text/plain" in json.dumps(spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"])
    schema = spec["components"]["schemas"]["RecommendRequest"]["properties"]
    assert "max_k" in schema["k"]["description"] or "at most" in schema["k"]["description"]


def test_aborted_generations_count_their_tokens(tiny_bundle):
    srv = make_server(tiny_bundle, max_model_len=8192, max_reasoning_tokens=4000).start()
    try:
        body = {"history": [{"item_id": "100"}], "max_reasoning_tokens": 4000, "use_cache": False}
        with httpx.stream("POST", srv.url + "/v1/recommend/stream", json=body, timeout=60) as r:
            for line in r.iter_lines():
                if line.startswith("event: reasoning"):
                    break
        assert _wait(lambda: _idle(srv.url))
        metrics = httpx.get(srv.url + "/metrics").text
        line = next(x for x in metrics.splitlines() if x.startswith("r2ec_generated_tokens_total"))
        assert float(line.split()[1]) > 0
    finally:
        srv.stop()
