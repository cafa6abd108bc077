"""Each error status is produced by a real request, in the one error shape, and the service keeps serving."""

from __future__ import annotations

import asyncio
import shutil

import httpx

from tests.service.conftest import make_server

OK = {"history": [{"item_id": "100", "rating": 4}], "k": 2, "reasoning": False}


def _shape(r, status, type_, field=None):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["type"] == type_ and err["message"] and err["request_id"]
    if field is not None:
        assert err["field"] == field, err
    return err


def test_400_and_422_name_the_problem(server):
    url = server.url + "/v1/recommend"
    _shape(httpx.post(url, content=b"{not json", headers={"content-type": "application/json"}), 400, "bad_request")
    _shape(httpx.post(url, json={"history": [{"item_id": "999999"}]}), 422, "validation_error", "history[0].item_id")
    for field in ("candidates", "exclude"):  # an id as long as any other: the message does not echo a megabyte
        long_id = _shape(httpx.post(url, json={**OK, field: ["100", "9" * 10_000]}), 422, "validation_error")
        assert long_id["field"] == f"{field}[1]" and len(long_id["message"]) < 1000
    _shape(
        httpx.post(url, json={"history": [{"item_id": "100", "rating": 9}]}),
        422,
        "validation_error",
        "history[0].rating",
    )
    _shape(httpx.post(url, json={**OK, "k": 0}), 422, "validation_error", "k")
    _shape(httpx.post(url, json={**OK, "k": 10_000}), 422, "validation_error", "k")
    _shape(
        httpx.post(url, json={**OK, "max_reasoning_tokens": 100_000}), 422, "validation_error", "max_reasoning_tokens"
    )
    _shape(httpx.post(url, json={**OK, "candidates": ["100", "zzz"]}), 422, "validation_error", "candidates[1]")
    _shape(httpx.post(url, json={**OK, "surprise": 1}), 422, "validation_error", "surprise")
    _shape(httpx.post(url, json={}), 422, "validation_error", "history")
    _shape(
        httpx.put(server.url + "/v1/users/bob/events", json={"events": [{"item_id": "nope"}]}),
        422,
        "validation_error",
        "events[0].item_id",
    )
    _shape(httpx.get(server.url + "/v1/users/bad%20id/events"), 422, "validation_error", "user_id")
    assert httpx.post(url, json=OK).status_code == 200  # still serving


def test_401_only_on_v1_when_keys_are_configured(tiny_bundle):
    srv = make_server(tiny_bundle, api_keys=["k1", "k2"]).start()
    try:
        url = srv.url + "/v1/recommend"
        _shape(httpx.post(url, json=OK), 401, "unauthorized")
        _shape(httpx.post(url, json=OK, headers={"Authorization": "Bearer wrong"}), 401, "unauthorized")
        assert httpx.post(url, json=OK, headers={"Authorization": "Bearer k2"}).status_code == 200
        assert httpx.get(srv.url + "/ready").status_code == 200  # probes stay open
        assert httpx.get(srv.url + "/metrics").status_code == 200
    finally:
        srv.stop()


def test_413_for_large_bodies_declared_or_streamed(tiny_bundle):
    srv = make_server(tiny_bundle, max_body_bytes=2000).start()
    try:
        big = {**OK, "candidates": ["100"] * 1000}
        declared = httpx.post(srv.url + "/v1/recommend", json=big)
        _shape(declared, 413, "payload_too_large")
        assert declared.headers["connection"] == "close"  # not left reading the rest of a body it refused

        def chunks():
            yield b'{"history": ['
            for _ in range(300):
                yield b'{"item_id": "100"},'
            yield b'{"item_id": "100"}]}'

        r = httpx.post(srv.url + "/v1/recommend", content=chunks(), headers={"content-type": "application/json"})
        _shape(r, 413, "payload_too_large")
        assert r.headers["connection"] == "close"
        assert httpx.post(srv.url + "/v1/recommend", json=OK).status_code == 200
    finally:
        srv.stop()


def test_429_when_the_admission_queue_is_full(tiny_bundle):
    srv = make_server(tiny_bundle, max_queue=1, max_reasoning_tokens=512).start()
    try:

        async def main():
            async with httpx.AsyncClient(timeout=120) as c:
                slow = asyncio.create_task(
                    c.post(
                        srv.url + "/v1/recommend",
                        json={"history": [{"item_id": "100"}], "max_reasoning_tokens": 300, "use_cache": False},
                    )
                )
                await asyncio.sleep(0.5)
                fast = await c.post(srv.url + "/v1/recommend", json=OK)
                return await slow, fast

        slow, fast = asyncio.run(main())
        assert slow.status_code == 200
        _shape(fast, 429, "overloaded")
        assert fast.headers["retry-after"] == "1"
        assert httpx.post(srv.url + "/v1/recommend", json=OK).status_code == 200  # admitted again afterwards
    finally:
        srv.stop()


def test_504_when_the_deadline_passes_and_the_generation_is_aborted(tiny_bundle):
    srv = make_server(tiny_bundle, request_timeout_s=0.5, max_reasoning_tokens=512).start()
    try:
        r = httpx.post(
            srv.url + "/v1/recommend",
            timeout=60,
            json={"history": [{"item_id": "100"}], "max_reasoning_tokens": 500, "use_cache": False},
        )
        _shape(r, 504, "timeout")
        ready = httpx.get(srv.url + "/ready").json()
        assert ready["inflight"] == 0
        assert httpx.post(srv.url + "/v1/recommend", json=OK, timeout=60).status_code == 200
    finally:
        srv.stop()


def test_503_while_not_ready_and_health_reports_the_failure(tiny_bundle, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_bundle, broken)
    (broken / "catalog.jsonl").write_text("tampered\n")
    srv = make_server(broken).start(wait_ready=False)
    try:
        import time

        for _ in range(100):
            ready = httpx.get(srv.url + "/ready")
            if ready.json().get("error"):
                break
            time.sleep(0.1)
        assert ready.status_code == 503 and "catalog.jsonl" in ready.json()["error"]
        assert str(tmp_path) not in ready.text  # /ready is unauthenticated: file names, not the machine's paths
        _shape(httpx.post(srv.url + "/v1/recommend", json=OK), 503, "not_ready")
    finally:
        srv.stop()


def test_503_while_draining(tiny_bundle):
    srv = make_server(tiny_bundle).start()
    try:
        srv.app.state.r2ec.draining = True
        _shape(httpx.post(srv.url + "/v1/recommend", json=OK), 503, "draining")
        assert httpx.get(srv.url + "/ready").status_code == 503
        assert httpx.get(srv.url + "/health").status_code == 200
    finally:
        srv.app.state.r2ec.draining = False
        srv.stop()


def test_stream_client_disconnect_aborts_generation(tiny_bundle):
    import time

    srv = make_server(tiny_bundle, max_reasoning_tokens=3000, max_model_len=8192).start()
    try:
        body = {"history": [{"item_id": "100"}], "max_reasoning_tokens": 3000, "use_cache": False}
        started = time.monotonic()
        with httpx.stream("POST", srv.url + "/v1/recommend/stream", json=body, timeout=60) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line.startswith("event: reasoning"):
                    break  # got the first delta: hang up mid-generation
        for _ in range(100):
            ready = httpx.get(srv.url + "/ready").json()
            if ready["inflight"] == 0 and ready["engine"]["running"] == 0:
                break
            time.sleep(0.1)
        assert ready["inflight"] == 0 and ready["engine"]["running"] == 0
        assert time.monotonic() - started < 20  # far sooner than 3000 tokens would take
        assert httpx.post(srv.url + "/v1/recommend", json=OK).status_code == 200
    finally:
        srv.stop()


def test_public_errors_name_files_not_the_machines_paths():
    from service.routers.ops import public_text

    assert public_text("BundleError: /srv/b/demo/catalog.jsonl: checksum") == "BundleError: catalog.jsonl: checksum"
    assert public_text("OSError: No such file: '/root/.cache/m/config.json'") == "OSError: No such file: 'config.json'"
    for kept in ("redis://127.0.0.1:6379/0 refused", "3/4 of the layers", "no room for the KV cache (1 GiB)"):
        assert public_text(kept) == kept
