"""FastAPI application factory: state, lifespan (load bundle + engine + cache), middleware, error handlers."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from threadpoolctl import threadpool_limits

import r2ec
from r2ec import logs
from r2ec.engine.base import Engine
from r2ec.index import check_device, place_index
from service.auth import named_tenant
from service.cache import LocalResultCache, RedisResultCache
from service.errors import EXCEPTIONS, ApiError, ErrorType, error_body, error_response, field_path, to_api_error
from service.metrics import Metrics
from service.middleware import RequestContext
from service.redis_conn import RedisConnection
from service.replies import ReplyCache
from service.routers import items, ops, recommend, users
from service.serving import RecommendService
from service.settings import Settings
from service.state import ServiceState
from service.user_store import LocalUserStore, RedisUserStore

log = logs.get(__name__)


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def install_error_handlers(app: FastAPI) -> None:
    async def _mapped(request: Request, exc: Exception) -> JSONResponse:
        err = to_api_error(exc)
        if not isinstance(exc, ApiError):
            log.warning(
                "request failed",
                extra={"request_id": _request_id(request), "error": repr(exc), "type": err.type.value},
            )
        return error_response(err, _request_id(request))

    kinds: list[type[Exception]] = [ApiError, *(k for k, _, _ in EXCEPTIONS)]
    for kind in kinds:
        app.add_exception_handler(kind, _mapped)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request", "type": "value_error"}
        if first.get("type") == "json_invalid":
            body = error_body(
                ErrorType.BAD_REQUEST, f"malformed JSON: {first.get('msg')}", _request_id(request), "body"
            )
            return JSONResponse(body, status_code=400)
        field = field_path(tuple(first.get("loc", ())))
        details = [{"field": field_path(e.get("loc", ())), "message": e.get("msg", "")} for e in errors[:20]]
        body = error_body(
            ErrorType.VALIDATION, f"{field}: {first.get('msg')}", _request_id(request), field, details=details
        )
        return JSONResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {
            404: ErrorType.NOT_FOUND,
            401: ErrorType.UNAUTHORIZED,
            405: ErrorType.METHOD_NOT_ALLOWED,
            413: ErrorType.PAYLOAD_TOO_LARGE,
        }.get(exc.status_code, ErrorType.BAD_REQUEST)
        body = error_body(kind, str(exc.detail), _request_id(request))
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"request_id": _request_id(request), "path": request.url.path})
        return JSONResponse(error_body(ErrorType.INTERNAL, "internal error", _request_id(request)), status_code=500)


async def load_components(
    state: ServiceState, engine_factory: Any = None, default_bundle: Callable[[], Path] | None = None
) -> None:
    """Load the bundle, start the engine and the cache. Runs after the server is listening.

    ``default_bundle`` provides the bundle when the settings name none (the entry point passes the demo bundle's
    builder); the service itself knows nothing of how bundles are made.
    """
    from r2ec.bundle import load_bundle
    from r2ec.engine.factory import EngineSettings, build_engine
    from r2ec.engine.selection import Candidate, candidates, start_first

    s = state.settings
    check_device(s.index_device)  # before minutes of model loading: a missing GPU is a start-up error
    if s.bundle is not None:
        bundle_path = s.bundle
    elif default_bundle is not None:
        bundle_path = await asyncio.to_thread(default_bundle)
    else:
        raise RuntimeError("no bundle: set --bundle / R2EC_BUNDLE")
    bundle = await asyncio.to_thread(load_bundle, bundle_path, s.verify_bundle)
    bundle.index, placement = place_index(bundle.index, bundle.index_spec, s.index_device)
    state.index_placement = placement.to_dict()
    log.info("index placed", extra={"kind": bundle.index_spec.kind, **placement.to_dict()})
    state.bundle = bundle  # serving defaults (dtype, reasoning budget) come from it
    tokenizer = await asyncio.to_thread(lambda: bundle.tokenizer)
    build = engine_factory or build_engine

    def make(c: Candidate) -> Engine:
        # 429 has one source, admission (service.serving): the engine's own queue bound sits above it, a safety net.
        settings = EngineSettings.from_settings(
            s, backend=c.backend, dtype=c.dtype, max_queue=max(256, 2 * s.max_queue)
        )
        return build(bundle.model_dir, tokenizer, settings, bundle.templates.answer, bundle.generation.extra_stops)

    plan = candidates(s.backend, s.dtype, bundle.generation.dtype, s.device)
    state.selection = await start_first(plan, make, lambda engine: engine.start())
    state.metrics.engine_start.labels(state.selection.backend, state.selection.dtype).set(state.selection.start_s)
    state.bundle = bundle
    state.engine = state.selection.engine
    state.recommender = bundle.recommender(state.engine)
    # Everything loaded so far (catalog, tokenizer, model objects: ~400k objects) lives as long as the process; a
    # full collection that scans it again takes ~0.25 s, the tail latency of every request it interrupts.
    gc.collect()
    gc.freeze()
    log.info(
        "ready",
        extra={
            "bundle": bundle.name,
            "bundle_version": bundle.version,
            "backend": state.selection.backend,
            "dtype": state.selection.dtype,
            "engine_start_s": round(state.selection.start_s, 2),
            "items": len(bundle.catalog),
        },
    )


def make_stores(state: ServiceState) -> None:
    """The result cache and the user store: both on one Redis connection when configured, in process otherwise."""
    s = state.settings
    state.replies = ReplyCache(s.reply_cache_size, s.cache_ttl_s)
    if s.redis_url:
        state.redis = RedisConnection(s.redis_url, s.redis_timeout_s)
        state.results = RedisResultCache(state.redis, s.cache_ttl_s)
        legacy = named_tenant(s.legacy_user_tenant) if s.legacy_user_tenant else None
        state.users = RedisUserStore(state.redis, s.user_events_cap, s.user_ttl_s, legacy)
    else:
        state.results = LocalResultCache(s.cache_size, s.cache_ttl_s)
        state.users = LocalUserStore(s.user_events_cap, s.user_ttl_s, s.local_users_max)


def create_app(
    settings: Settings | None = None, engine_factory: Any = None, default_bundle: Callable[[], Path] | None = None
) -> FastAPI:
    settings = settings or Settings()
    state = ServiceState(settings=settings, metrics=Metrics())
    state.idle.set()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Per-request numpy work (one catalog product) is small: a BLAS thread pool costs more than it saves
        # (1-3 ms instead of 50 us for 1,682 x 576) and contends with the engine; requests are the parallelism.
        threadpool_limits(1, user_api="blas")
        if settings.threads:
            import torch

            torch.set_num_threads(settings.threads)
        make_stores(state)
        if state.redis is not None:
            await state.redis.start()

        async def load() -> None:
            try:
                await load_components(state, engine_factory, default_bundle)
            except Exception as exc:
                state.startup_error = f"{type(exc).__name__}: {exc}"
                log.error("startup failed", extra={"error": state.startup_error})

        app.state.loader = asyncio.create_task(load())
        try:
            yield
        finally:
            state.draining = True
            app.state.loader.cancel()
            if state.engine is not None:
                await state.engine.close()
            if state.redis is not None:
                await state.redis.close()
            gc.unfreeze()  # what this app froze may be collected again (tests run many apps in one process)

    app = FastAPI(
        title="r2ec-serve",
        version=r2ec.__version__,
        description=(
            "Reasoning recommender (R²ec): one LLM writes reasoning about a user's history and ranks catalog items "
            'with the hidden state it ends on. All errors share one shape: `{"error": {type, message, field, '
            "request_id}}`."
        ),
        lifespan=lifespan,
    )
    app.state.r2ec = state
    app.state.r2ec_service = RecommendService(state)
    install_error_handlers(app)
    for router in (recommend.router, users.router, items.router, ops.router):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=str(ops.STATIC)), name="static")
    app.add_middleware(RequestContext, state=state)
    return app
