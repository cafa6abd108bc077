"""The catalog: GET /v1/items?q= (title search, paginated), GET /v1/items/{item_id}, GET /v1/examples."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Depends, Query, Request

from service.auth import require_api_key
from service.errors import ApiError, ErrorType
from service.protocol import ERROR_RESPONSES, ExamplesResponse, ItemResponse, ItemsPage
from service.state import get_state

router = APIRouter(prefix="/v1", tags=["items"], dependencies=[Depends(require_api_key)])


def _catalog(request: Request):  # type: ignore[no-untyped-def]
    bundle = get_state(request).bundle
    if bundle is None:
        raise ApiError(ErrorType.NOT_READY, "the catalog is not loaded")
    return bundle


@router.get("/items", response_model=ItemsPage, responses=ERROR_RESPONSES)
def search_items(
    request: Request,
    q: str = Query("", max_length=200, description="Case-insensitive substring of the title; empty lists all."),
    limit: int = Query(20, ge=1, le=100),
    offset: int = Query(0, ge=0, le=10_000_000),
) -> ItemsPage:
    """Catalog items whose title contains ``q``, in catalog order, one page at a time."""
    # A plain def: FastAPI runs it in its thread pool, so a scan of a large catalog never stalls the event loop
    # (and with it every stream and health probe).
    needle = q.casefold().strip()
    found = [it for it in _catalog(request).catalog if needle in it.title.casefold()]
    page = found[offset : offset + limit]
    return ItemsPage(
        items=[ItemResponse.model_validate(asdict(it)) for it in page], total=len(found), offset=offset, limit=limit
    )


@router.get("/examples", response_model=ExamplesResponse, responses=ERROR_RESPONSES)
async def examples(request: Request) -> ExamplesResponse:
    """Example histories of real users that the bundle carries (none for bundles without them)."""
    return ExamplesResponse.model_validate({"examples": _catalog(request).examples})


@router.get("/items/{item_id}", response_model=ItemResponse, responses=ERROR_RESPONSES)
async def get_item(item_id: str, request: Request) -> ItemResponse:
    bundle = _catalog(request)
    if item_id not in bundle.catalog:
        raise ApiError(ErrorType.NOT_FOUND, f"unknown item id {item_id!r}", "item_id")
    return ItemResponse.model_validate(asdict(bundle.catalog.get(item_id)))
