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
    srv = make_server(authors_bundle).start()
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
