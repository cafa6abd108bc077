"""The API over real HTTP, a real Redis and the transformers engine on the tiny bundle."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from model_export.evaluate import rank_of_target
from r2ec.engine.base import GenerationOptions
from tests.helpers import split_samples, sse_events, transformers_recommender

HISTORY = [
    {"item_id": "100", "rating": 5, "timestamp": 1_600_000_000},
    {"item_id": "101", "rating": 3, "timestamp": 1_600_003_600},
    {"item_id": "102", "timestamp": 1_600_007_200},
]
# Where two answers are compared, a fixed "now": the prompt shows ages to the tenth of an hour, so requests seconds
# apart could otherwise straddle a step and read different prompts.
AS_OF = 1_600_010_000


def post(server, body, path="/v1/recommend", **kw):
    return httpx.post(server.url + path, json=body, timeout=120, **kw)


def test_recommend_returns_ranked_items_with_reasoning(server):
    captured = _metric(server, 'r2ec_user_vectors_total{source="capture"}')
    r = post(server, {"history": HISTORY, "k": 5, "max_reasoning_tokens": 6}, headers={"X-Request-Id": "abc-123"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["request_id"] == "abc-123" and r.headers["x-request-id"] == "abc-123"
    assert len(body["items"]) == 5 and body["reasoning_tokens"] == 6 and isinstance(body["reasoning"], str)
    assert {"100", "101", "102"}.isdisjoint(i["item_id"] for i in body["items"])  # history excluded
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert body["items"][0]["title"] and 0 < body["items"][0]["probability"] < 1
    for h in ("x-total-time-ms", "x-generation-time-ms", "x-capture-time-ms", "x-search-time-ms"):
        assert float(r.headers[h]) >= 0
    assert body["history_used"] == 3 and body["bundle_version"]
    # Cut by its budget before <answer>: the vector needed a capture pass of its own, and /metrics counts it.
    assert _metric(server, 'r2ec_user_vectors_total{source="capture"}') == captured + 1


def test_second_identical_request_is_served_from_cache_without_generation(server):
    body = {"history": HISTORY[:2], "k": 3, "max_reasoning_tokens": 7}  # a budget no other test here uses
    first = post(server, body)
    tokens_before = _metric(server, "r2ec_generated_tokens_total")
    second = post(server, body)
    assert first.json()["cached"] is False  # the session's Redis database is flushed at start
    assert second.json()["cached"] is True and second.headers["x-cache"] == "hit"
    assert second.json()["reasoning"] == first.json()["reasoning"]
    assert second.json()["items"] == first.json()["items"]
    assert second.json()["timings"]["generation_ms"] == 0
    assert _metric(server, "r2ec_generated_tokens_total") == tokens_before  # no generation happened
    # use_cache=false forces a fresh generation, which gives the same greedy answer
    fresh = post(server, {**body, "use_cache": False})
    assert fresh.json()["cached"] is False and fresh.json()["items"] == first.json()["items"]


def test_reasoning_free_mode_and_candidates(server):
    r = post(server, {"history": HISTORY, "reasoning": False, "candidates": ["100", "110", "120", "130"], "k": 10})
    body = r.json()
    assert r.status_code == 200 and body["reasoning"] is None and body["reasoning_tokens"] == 0
    assert {i["item_id"] for i in body["items"]} == {"110", "120", "130"}
    assert sum(i["probability"] for i in body["items"]) == pytest.approx(1.0, rel=1e-4)


def test_stream_deltas_join_to_the_final_reasoning(server):
    with httpx.stream(
        "POST",
        server.url + "/v1/recommend/stream",
        timeout=120,
        json={"history": HISTORY, "k": 3, "max_reasoning_tokens": 10, "use_cache": False},
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r.read().decode())
    deltas = [d["delta"] for e, d in events if e == "reasoning"]
    results = [d for e, d in events if e == "result"]
    assert len(deltas) >= 2 and len(results) == 1 and events[-1][1] == "[DONE]"
    assert "".join(deltas) == results[0]["reasoning"]


def test_user_context_roundtrip_in_redis_and_recommend_by_user_id(server):
    url = server.url + "/v1/users/alice/events"
    httpx.delete(url)
    assert httpx.get(url).status_code == 404
    assert httpx.put(url, json={"events": HISTORY[:2]}).json()["events"][0]["item_id"] == "100"
    r = httpx.post(url, json={"events": [HISTORY[2]]})
    assert [e["item_id"] for e in r.json()["events"]] == ["100", "101", "102"]
    assert [e["item_id"] for e in httpx.get(url).json()["events"]] == ["100", "101", "102"]
    rec = post(server, {"user_id": "alice", "k": 3, "reasoning": False})
    assert rec.status_code == 200 and rec.json()["history_used"] == 3
    same = post(server, {"history": HISTORY, "k": 3, "reasoning": False})
    assert [i["item_id"] for i in rec.json()["items"]] == [i["item_id"] for i in same.json()["items"]]
    assert httpx.delete(url).status_code == 204
    assert post(server, {"user_id": "alice"}).status_code == 404


def test_items_info_health_metrics(server):
    assert httpx.get(server.url + "/v1/items/100").json()["item_id"] == "100"
    r = httpx.get(server.url + "/v1/items/nope")
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"
    info = httpx.get(server.url + "/info").json()
    assert info["bundle"]["items"] == 60 and info["bundle"]["dim"] == 128 and info["backend"] == "transformers"
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}
    ready = httpx.get(server.url + "/ready").json()
    assert ready["status"] == "ready" and ready["cache"]["kind"] == "redis" and ready["cache"]["status"] == "ok"
    metrics = httpx.get(server.url + "/metrics").text
    for name in (
        "r2ec_requests_total",
        "r2ec_request_seconds_bucket",
        "r2ec_stage_seconds_bucket",
        "r2ec_generated_tokens_total",
        "r2ec_cache_lookups_total",
        "r2ec_queue_depth",
        "r2ec_inflight_requests",
    ):
        assert name in metrics
    assert 'stage="generation"' in metrics and 'stage="search"' in metrics


def test_openapi_has_examples(server):
    spec = httpx.get(server.url + "/openapi.json").json()
    assert "/v1/recommend" in spec["paths"] and "/v1/recommend/stream" in spec["paths"]
    assert spec["components"]["schemas"]["RecommendRequest"]["examples"]


def _metric(server, name: str) -> float:
    for line in httpx.get(server.url + "/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


async def test_service_ranks_exactly_as_the_offline_evaluator(server, tiny_bundle, dataset_dir):
    async with transformers_recommender(tiny_bundle) as (b, rec), httpx.AsyncClient(timeout=120) as client:
        samples = split_samples(dataset_dir, 4)
        for reasoning in (True, False):
            for s in samples:
                offline = await rank_of_target(rec, s, GenerationOptions(max_tokens=6), reasoning, k=20)
                ranked = rec.rank_rows(
                    (await rec.user_vector(s.history, s.now, GenerationOptions(max_tokens=6), "x", reasoning)).vector,
                    s.history,
                    20,
                )
                body = {
                    "history": [
                        {"item_id": e.item_id, "rating": e.rating, "timestamp": e.timestamp} for e in s.history
                    ],
                    "k": 20,
                    "reasoning": reasoning,
                    "max_reasoning_tokens": 6,
                    "as_of": s.now,
                    "use_cache": False,
                }
                r = await client.post(server.url + "/v1/recommend", json=body)
                got = [i["item_id"] for i in r.json()["items"]]
                assert got == [b.catalog.items[int(x)].item_id for x in ranked.rows]
                target_rank = got.index(s.target.item_id) if s.target.item_id in got else None
                assert target_rank == offline.rank
                if reasoning:
                    assert r.json()["reasoning"] == offline.reasoning


def _batch_body(i: int) -> dict[str, Any]:
    return {"history": HISTORY[: 1 + i % 3], "k": 2, "max_reasoning_tokens": 4 + i, "use_cache": False, "as_of": AS_OF}


def test_concurrent_requests_are_batched_and_all_succeed(server):
    async def main():
        async with httpx.AsyncClient(timeout=120) as client:
            bodies = [_batch_body(i) for i in range(6)]
            return await asyncio.gather(*(client.post(server.url + "/v1/recommend", json=b) for b in bodies))

    batches_before = httpx.get(server.url + "/ready").json()["engine"]["batches"]
    results = asyncio.run(main())
    assert all(r.status_code == 200 for r in results), [r.text for r in results]
    batches = httpx.get(server.url + "/ready").json()["engine"]["batches"] - batches_before
    assert batches < len(results), batches  # some requests shared a batch
    # Batching changes nothing: each answer equals the same request served alone (greedy, no cache).
    for i, r in enumerate(results):
        alone = httpx.post(server.url + "/v1/recommend", json=_batch_body(i), timeout=120).json()
        assert alone["reasoning"] == r.json()["reasoning"]
        assert [x["item_id"] for x in alone["items"]] == [x["item_id"] for x in r.json()["items"]]
