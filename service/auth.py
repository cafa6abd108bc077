"""Bearer-key auth for /v1 (only there: health, readiness, info and metrics stay open for probes)."""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Request

from service.errors import ApiError, ErrorType
from service.state import get_state


def check_bearer(keys: list[str], header: str) -> str | None:
    """The tenant (a digest of the matching key) for an ``Authorization`` header; raises 401 when keys are
    configured and the header does not carry one of them. ``None`` when auth is off."""
    if not keys:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(ErrorType.UNAUTHORIZED, "missing bearer token (Authorization: Bearer <key>)")
    token = token.strip()
    if not any(hmac.compare_digest(token.encode(), k.encode()) for k in keys):
        raise ApiError(ErrorType.UNAUTHORIZED, "invalid API key")
    return tenant_of(token)


def tenant_of(key: str) -> str:
    """A key's tenant id for cache keys: a digest, so no key is ever stored."""
    return hashlib.sha256(b"r2ec-tenant:" + key.encode()).hexdigest()[:16]


async def require_api_key(request: Request) -> None:
    """Dependency form (the middleware already checked /v1 before the body was read; this keeps the OpenAPI
    security declaration and covers apps mounted without the middleware)."""
    request.state.tenant = check_bearer(get_state(request).settings.api_keys, request.headers.get("authorization", ""))
