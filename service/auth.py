"""Bearer-key auth for /v1 (only there: health, readiness, info and metrics stay open for probes)."""

from __future__ import annotations

import hmac

from fastapi import Request

from service.errors import ApiError, ErrorType
from service.state import get_state


async def require_api_key(request: Request) -> None:
    keys = get_state(request).settings.api_keys
    if not keys:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(ErrorType.UNAUTHORIZED, "missing bearer token (Authorization: Bearer <key>)")
    if not any(hmac.compare_digest(token.strip().encode(), k.encode()) for k in keys):
        raise ApiError(ErrorType.UNAUTHORIZED, "invalid API key")
