"""POST /v1/recommend and its Server-Sent-Events twin /v1/recommend/stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse

from r2ec import logs
from r2ec.engine.base import Delta
from service.auth import request_tenant, require_api_key
from service.errors import ApiError, ErrorType, error_body, to_api_error
from service.protocol import ERROR_RESPONSES, RecommendRequest, RecommendResponse
from service.replies import replayable
from service.state import get_service, get_state

router = APIRouter(prefix="/v1", tags=["recommend"], dependencies=[Depends(require_api_key)])
log = logs.get(__name__)


def _timing_headers(response: Response, result: RecommendResponse) -> None:
    t = result.timings
    response.headers["X-Generation-Time-Ms"] = f"{t.generation_ms:.1f}"
    response.headers["X-Capture-Time-Ms"] = f"{t.capture_ms:.1f}"
    response.headers["X-Search-Time-Ms"] = f"{t.search_ms:.2f}"
    response.headers["X-Queue-Time-Ms"] = f"{t.queue_ms:.1f}"
    response.headers["X-Cache"] = "hit" if result.cached else "miss"


class ClientGone(Exception):
    """The client of a unary request hung up: its work was cancelled and its slot freed."""


async def _unless_disconnected(request: Request, work: Awaitable[RecommendResponse]) -> RecommendResponse:
    """Run ``work``; if the client disconnects first, cancel it (which aborts the engine request)."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.2)
            if done:
                return task.result()
            if await request.is_disconnected():
                raise ClientGone()
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


@router.post("/recommend", response_model=RecommendResponse, responses=ERROR_RESPONSES)
async def recommend(body: RecommendRequest, request: Request, response: Response) -> RecommendResponse:
    """Rank catalog items for a history, with the model's reasoning."""
    service = get_service(request)
    async with service.admitted():
        try:
            result = await _unless_disconnected(
                request, service.recommend(body, request.state.request_id, request_tenant(request))
            )
        except ClientGone:
            get_state(request).metrics.disconnects.inc()
            raise ApiError(ErrorType.CLIENT_CLOSED, "client closed the request") from None
    _timing_headers(response, result)
    st = get_state(request)
    key = getattr(request.state, "reply_key", None)
    ages = st.bundle is not None and "{delta}" in st.bundle.templates.history_line
    if key is not None and st.replies is not None and replayable(body, prompt_ages=ages):
        st.replies.put(key, result)
    return result


def _sse(event: str, data: object) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


@router.post(
    "/recommend/stream",
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "reasoning deltas, result, [DONE]"},
        **ERROR_RESPONSES,
    },
)
async def recommend_stream(body: RecommendRequest, request: Request) -> StreamingResponse:
    """Stream reasoning deltas (`event: reasoning`) as they are generated, then `event: result`, then `[DONE]`.

    Errors found before streaming starts are ordinary JSON errors; a failure mid-stream (the deadline included)
    is sent as `event: error` in the one error shape, then the stream ends. A client that disconnects aborts the
    generation.
    """
    service = get_service(request)
    service.admit()
    request_id = request.state.request_id
    try:
        # Validate (and look up stored events) before the 200 goes out, so bad input still gets a 4xx.
        stream: AsyncGenerator[Delta | RecommendResponse, None] = service.bounded(
            body, request_id, request_tenant(request)
        )
        first = await anext(stream)
    except BaseException:
        service.release()
        raise

    async def events() -> AsyncIterator[str]:
        try:
            event: Delta | RecommendResponse | None = first
            while event is not None:
                if isinstance(event, Delta):
                    yield _sse("reasoning", {"delta": event.text})
                else:
                    yield _sse("result", event.model_dump(mode="json"))
                event = await anext(stream, None)
            yield "data: [DONE]\n\n"
        except Exception as exc:
            err = to_api_error(exc)
            if not isinstance(exc, ApiError):
                log.warning("stream failed", extra={"request_id": request_id, "error": repr(exc)})
            yield _sse("error", error_body(err.type, err.message, request_id, err.field))
        finally:
            await stream.aclose()  # aborts the engine request when the client went away
            service.release()

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
