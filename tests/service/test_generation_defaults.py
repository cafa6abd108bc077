"""A bundle records its serving defaults; the service uses them unless a flag or the request overrides."""

from __future__ import annotations

import httpx
import pytest

from model_export.bundle import load_bundle
from r2ec.templates import AUTHORS_GENERATION
from tests.helpers import export_tiny
from tests.service.conftest import make_server


@pytest.fixture(scope="module")
def authors_bundle(tmp_path_factory, tiny_model_dir, dataset_dir):
    out = tmp_path_factory.mktemp("authors") / "games"
    return export_tiny(tiny_model_dir, dataset_dir, out, "video_games")


def test_export_of_an_authors_domain_records_their_defaults(authors_bundle, tiny_bundle):
    g = load_bundle(authors_bundle).generation
    assert (
        (g.max_reasoning_tokens, g.dtype, g.stop)
        == (640, "bfloat16", "<answer>")
        == (
            AUTHORS_GENERATION.max_reasoning_tokens,
            AUTHORS_GENERATION.dtype,
            AUTHORS_GENERATION.stop,
        )
    )
    assert load_bundle(tiny_bundle).generation.max_reasoning_tokens == 128


def test_service_serves_the_bundle_defaults_and_flags_win(authors_bundle):
    srv = make_server(authors_bundle, dtype=None).start()  # the authors' bfloat16, native here or not
    try:
        info = httpx.get(srv.url + "/info").json()
        assert info["dtype"] == "bfloat16"
        assert info["limits"]["default_reasoning_tokens"] == 640
        assert info["limits"]["max_reasoning_tokens"] >= 640
        assert info["bundle"]["generation"]["max_reasoning_tokens"] == 640
    finally:
        srv.stop()
    srv = make_server(authors_bundle, dtype="float32", default_reasoning_tokens=16).start()
    try:
        info = httpx.get(srv.url + "/info").json()
        assert info["dtype"] == "float32" and info["limits"]["default_reasoning_tokens"] == 16
        r = httpx.post(srv.url + "/v1/recommend", json={"history": [{"item_id": "100"}], "k": 2}, timeout=120)
        assert r.status_code == 200 and r.json()["reasoning_tokens"] <= 16
    finally:
        srv.stop()


def test_budget_cap_is_bounded_by_the_context(tiny_bundle):
    srv = make_server(tiny_bundle, max_model_len=2048 + 300, max_reasoning_tokens=5000).start()
    try:
        assert httpx.get(srv.url + "/info").json()["limits"]["max_reasoning_tokens"] == 300
        r = httpx.post(
            srv.url + "/v1/recommend", json={"history": [{"item_id": "100"}], "max_reasoning_tokens": 301}, timeout=60
        )
        assert r.status_code == 422 and r.json()["error"]["field"] == "max_reasoning_tokens"
    finally:
        srv.stop()


@pytest.mark.vllm
def test_the_default_engine_is_vllm_in_bfloat16_where_it_pays(tiny_bundle):
    """No backend or dtype given: vLLM serves, in bfloat16 where it pays on this processor (the verdict the server
    reads is the one this process measured or read: one per machine), and /info says why."""
    from r2ec.engine.selection import bf16_verdict

    srv = make_server(
        tiny_bundle, backend="auto", dtype=None, max_reasoning_tokens=64, default_reasoning_tokens=8
    ).start(timeout=300)
    try:
        info = httpx.get(srv.url + "/info").json()
        verdict = bf16_verdict()
        expected = "bfloat16" if verdict.pays else load_bundle(tiny_bundle).generation.dtype
        assert (info["backend"], info["dtype"]) == ("vllm", expected)
        assert verdict.reason in info["engine"]["attempts"][0]["reason"]
        assert [a["error"] for a in info["engine"]["attempts"]] == [None] and info["engine"]["start_s"] > 0
        assert info["capture"] == "runner-v1:compute_logits"
        r = httpx.post(srv.url + "/v1/recommend", json={"history": [{"item_id": "100"}], "k": 3}, timeout=120)
        assert r.status_code == 200 and len(r.json()["items"]) == 3
        metrics = httpx.get(srv.url + "/metrics").text
        assert f'r2ec_engine_start_seconds{{backend="vllm",dtype="{expected}"}}' in metrics
    finally:
        srv.stop()


@pytest.mark.vllm
def test_auto_falls_back_to_transformers_when_vllm_cannot_start(tiny_bundle):
    """A context longer than the model allows stops vLLM at start (a real failure); transformers takes over."""
    srv = make_server(
        tiny_bundle, backend="auto", dtype="float32", max_model_len=1_000_000, default_reasoning_tokens=8
    ).start(timeout=300)
    try:
        info = httpx.get(srv.url + "/info").json()
        attempts = info["engine"]["attempts"]
        assert (info["backend"], info["dtype"]) == ("transformers", "float32")
        assert [a["backend"] for a in attempts] == ["vllm", "transformers"]
        assert attempts[0]["error"] and attempts[1]["error"] is None
        assert httpx.get(srv.url + "/ready").json()["engine"]["backend"] == "transformers"
        r = httpx.post(srv.url + "/v1/recommend", json={"history": [{"item_id": "100"}], "k": 3}, timeout=120)
        assert r.status_code == 200
    finally:
        srv.stop()
