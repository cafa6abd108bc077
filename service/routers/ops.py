"""Operational endpoints: /health (liveness), /ready (readiness), /info (identity), /metrics (Prometheus)."""

from __future__ import annotations

import re
from pathlib import Path, PurePath
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

import r2ec
from service.state import get_state

router = APIRouter(tags=["ops"])


def _cache_status(cache: dict[str, Any]) -> str:
    if cache.get("data_lost"):
        return "data_lost"  # user contexts vanished: an operator must restore or accept the loss (restart)
    return "ok" if cache.get("healthy") else "degraded"


STATIC = Path(__file__).resolve().parents[1] / "static"


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    """The demo page (public: it asks for an API key when /v1 needs one)."""
    return FileResponse(STATIC / "index.html", media_type="text/html")


@router.get("/health")
async def health() -> dict[str, str]:
    """The process is alive and its event loop answers (never depends on the model or Redis)."""
    return {"status": "ok"}


@router.get(
    "/ready",
    responses={
        200: {"description": "serving /v1 (the cache may still be degraded: see cache.status)"},
        503: {"description": "loading, draining or the engine failed (same body shape)"},
    },
)
async def ready(request: Request) -> JSONResponse:
    """200 when /v1 traffic will be served; 503 while loading, draining or after an engine failure.

    A degraded cache does not make the service unready (requests are served uncached) but is reported.
    """
    st = get_state(request)
    cache = st.store_state()
    body: dict[str, Any] = {
        "status": "ready" if st.ready else ("draining" if st.draining else "not_ready"),
        "engine": {
            "backend": st.backend,
            "dtype": st.dtype,
            "ready": bool(st.engine is not None and st.engine.ready),
            **(st.engine.stats() if st.engine is not None else {}),
        },
        "index": {
            "loaded": st.bundle is not None,
            "items": len(st.bundle.catalog) if st.bundle else 0,
            **(st.index_placement or {}),
        },
        "cache": {**cache, "status": _cache_status(cache)},
        "inflight": st.inflight,
    }
    if st.startup_error:
        body["error"] = public_text(st.startup_error)
    st.metrics.ready.set(1 if st.ready else 0)
    return JSONResponse(body, status_code=200 if st.ready else 503)


# An absolute file path (not a URL's //host or /path: those follow ':' or a word character).
_ABS_PATH = re.compile(r"(?<![\w.:/])/(?:[^\s'\"/:,;()\[\]{}<>]+/)*([^\s'\"/:,;()\[\]{}<>]+)")


def public_text(text: str) -> str:
    """An error for the unauthenticated /ready and /info: absolute file paths cut to their last part (the file's
    name says what failed; the layout of the machine is not the caller's business; the log has it whole)."""
    return _ABS_PATH.sub(lambda m: m.group(1), text)


def _public_model(model: dict[str, Any]) -> dict[str, Any]:
    """The manifest's model identity without the exporter's file-system paths (base / adapter: names only)."""
    out = dict(model)
    for key in ("base", "adapter"):
        if out.get(key):
            out[key] = PurePath(str(out[key])).name
    return out


def _public_selection(selection: dict[str, Any]) -> dict[str, Any]:
    attempts = [
        {**a, "error": public_text(a["error"]) if a.get("error") else a.get("error")} for a in selection["attempts"]
    ]
    return {**selection, "attempts": attempts}


@router.get("/info")
async def info(request: Request) -> dict[str, Any]:
    st = get_state(request)
    b = st.bundle
    return {
        "service": "r2ec-serve",
        "version": r2ec.__version__,
        "backend": st.backend,
        "dtype": st.dtype,
        "engine": _public_selection(st.selection.to_dict()) if st.selection is not None else None,
        "capture": st.engine.stats().get("capture") if st.engine is not None else None,
        "bundle": None
        if b is None
        else {
            "name": b.name,
            "version": b.version,
            "domain": b.manifest.get("domain"),
            "created_at": b.manifest.get("created_at"),
            "model": _public_model(b.manifest["model"]),
            "items": len(b.catalog),
            "dim": b.dim,
            "tau": b.tau,
            "index": {**b.manifest["index"], **(st.index_placement or {})},
            "window_size": b.templates.window_size,
            "generation": b.generation.to_dict(),
        },
        "auth": bool(st.settings.keyring),  # whether /v1 needs a bearer key (the page asks for one)
        "limits": {
            "max_k": st.settings.max_k,
            "max_reasoning_tokens": st.max_reasoning_tokens,
            "default_reasoning_tokens": st.default_reasoning_tokens,
            "max_history": st.settings.max_history,
            "max_body_bytes": st.settings.max_body_bytes,
            "request_timeout_s": st.settings.request_timeout_s,
        },
    }


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text exposition"}},
)
async def metrics(request: Request) -> Response:
    st = get_state(request)
    st.metrics.sync_tokens(st.engine.generated_tokens if st.engine is not None else 0)
    if st.recommender is not None:
        st.metrics.sync_vectors(st.recommender.vector_sources())
    if st.users is not None:
        store = st.store_state()
        st.metrics.cache_up.set(1 if store["healthy"] else 0)
        st.metrics.store_lost.set(1 if store.get("data_lost") else 0)
    st.metrics.ready.set(1 if st.ready else 0)
    return Response(generate_latest(st.metrics.registry), media_type=CONTENT_TYPE_LATEST)
