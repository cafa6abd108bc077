"""POST /v1/recommend and its Server-Sent-Events twin /v1/recommend/stream."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse

from r2ec import logs
from r2ec.engine.base import Delta
from service.auth import require_api_key
from service.errors import ApiError, error_body
from service.protocol import ERROR_RESPONSES, RecommendRequest, RecommendResponse
from service.serving import RecommendService
from service.state import get_state

router = APIRouter(prefix="/v1", tags=["recommend"], dependencies=[Depends(require_api_key)])
log = logs.get(__name__)


def _timing_headers(response: Response, result: RecommendResponse) -> None:
    t = result.timings
    response.headers["X-Generation-Time-Ms"] = f"{t.generation_ms:.1f}"
    response.headers["X-Capture-Time-Ms"] = f"{t.capture_ms:.1f}"
    response.headers["X-Search-Time-Ms"] = f"{t.search_ms:.2f}"
    response.headers["X-Queue-Time-Ms"] = f"{t.queue_ms:.1f}"
    response.headers["X-Cache"] = "hit" if result.cached else "miss"


@router.post("/recommend", response_model=RecommendResponse, responses=ERROR_RESPONSES)
async def recommend(body: RecommendRequest, request: Request, response: Response) -> RecommendResponse:
    """Rank catalog items for a history, with the model's reasoning."""
    service = RecommendService(get_state(request))
    service.admit()
    try:
        result = await service.recommend(body, request.state.request_id)
    finally:
        service.release()
    _timing_headers(response, result)
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

    Errors found before streaming starts are ordinary JSON errors; a failure mid-stream is sent as
    `event: error` in the one error shape. A client that disconnects aborts the generation.
    """
    service = RecommendService(get_state(request))
    service.admit()
    request_id = request.state.request_id
    try:
        # Validate (and look up stored events) before the 200 goes out, so bad input still gets a 4xx.
        stream: AsyncGenerator[Delta | RecommendResponse, None] = service.stream(body, request_id)
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
        except ApiError as err:
            yield _sse("error", error_body(err.type, err.message, request_id, err.field))
        finally:
            await stream.aclose()  # aborts the engine request when the client went away
            service.release()

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
