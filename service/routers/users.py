"""/v1/users/{user_id}/events: the stored user context (recent events, capped)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Path, Request, Response

from r2ec.catalog import Event
from service.auth import request_tenant, require_api_key
from service.errors import ApiError, ErrorType
from service.protocol import ERROR_RESPONSES, HistoryEvent, UserEvents, UserEventsResponse
from service.serving import check_known
from service.state import get_state
from service.user_store import UserStore

router = APIRouter(prefix="/v1/users", tags=["users"], dependencies=[Depends(require_api_key)])
UserId = Path(..., min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$")


def _store(request: Request) -> UserStore:
    state = get_state(request)
    if state.users is None:
        raise ApiError(ErrorType.NOT_READY, "the user store is not ready")
    return state.users


def _validated(request: Request, body: UserEvents) -> list[Event]:
    state = get_state(request)
    catalog = state.bundle.catalog if state.bundle else None
    if catalog is None:
        raise ApiError(ErrorType.NOT_READY, "the catalog is not loaded")
    if len(body.events) > state.settings.max_history:
        raise ApiError(ErrorType.VALIDATION, f"at most {state.settings.max_history} events", "events")
    now = time.time()
    check_known(catalog, (e.item_id for e in body.events), "events[{i}].item_id")
    events = [e.to_event(now) for e in body.events]
    return sorted(events, key=lambda e: e.timestamp)


def _response(user_id: str, events: list[Event]) -> UserEventsResponse:
    return UserEventsResponse(
        user_id=user_id,
        events=[HistoryEvent.of(e) for e in events],
    )


@router.get("/{user_id}/events", response_model=UserEventsResponse, responses=ERROR_RESPONSES)
async def get_events(request: Request, user_id: str = UserId) -> UserEventsResponse:
    events = await _store(request).get(user_id, request_tenant(request))
    if events is None:
        raise ApiError(ErrorType.NOT_FOUND, f"user {user_id!r} has no stored events", "user_id")
    return _response(user_id, events)


@router.put("/{user_id}/events", response_model=UserEventsResponse, responses=ERROR_RESPONSES)
async def put_events(body: UserEvents, request: Request, user_id: str = UserId) -> UserEventsResponse:
    """Replace the user's events (kept in time order, the oldest dropped beyond the cap)."""
    events = _validated(request, body)
    store = _store(request)
    await store.replace(user_id, events, request_tenant(request))
    stored = await store.get(user_id, request_tenant(request))
    return _response(user_id, stored or [])


@router.post("/{user_id}/events", response_model=UserEventsResponse, responses=ERROR_RESPONSES)
async def append_events(body: UserEvents, request: Request, user_id: str = UserId) -> UserEventsResponse:
    """Append events (e.g. as the user interacts)."""
    events = _validated(request, body)
    stored = await _store(request).append(user_id, events, request_tenant(request))
    return _response(user_id, stored)


@router.delete("/{user_id}/events", status_code=204, responses=ERROR_RESPONSES)
async def delete_events(request: Request, user_id: str = UserId) -> Response:
    if not await _store(request).delete(user_id, request_tenant(request)):
        raise ApiError(ErrorType.NOT_FOUND, f"user {user_id!r} has no stored events", "user_id")
    return Response(status_code=204)
