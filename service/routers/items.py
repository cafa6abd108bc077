"""GET /v1/items/{item_id}: catalog lookup."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Depends, Request

from service.auth import require_api_key
from service.errors import ApiError, ErrorType
from service.protocol import ERROR_RESPONSES, ItemResponse
from service.state import get_state

router = APIRouter(prefix="/v1/items", tags=["items"], dependencies=[Depends(require_api_key)])


@router.get("/{item_id}", response_model=ItemResponse, responses=ERROR_RESPONSES)
async def get_item(item_id: str, request: Request) -> ItemResponse:
    bundle = get_state(request).bundle
    if bundle is None:
        raise ApiError(ErrorType.NOT_READY, "the catalog is not loaded")
    if item_id not in bundle.catalog:
        raise ApiError(ErrorType.NOT_FOUND, f"unknown item id {item_id!r}", "item_id")
    return ItemResponse.model_validate(asdict(bundle.catalog.get(item_id)))
