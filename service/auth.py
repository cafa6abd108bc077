"""Bearer-key auth for /v1 (only there: health, readiness, info and metrics stay open for probes)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from fastapi import Request

from service.errors import ApiError, ErrorType
from service.state import get_state


def check_bearer(keyring: Sequence[tuple[str, str | None]], header: str) -> str | None:
    """The tenant of the key an ``Authorization`` header carries; raises 401 when keys are configured and it
    carries none of them. ``None`` when auth is off.

    Every configured key is compared, in constant time each, whichever matches: how long a check takes does
    not tell which key (or whether an early one) matched."""
    if not keyring:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(ErrorType.UNAUTHORIZED, "missing bearer token (Authorization: Bearer <key>)")
    given = hashlib.sha256(token.strip().encode()).digest()
    found: str | None = None
    for key, name in keyring:
        if hmac.compare_digest(given, hashlib.sha256(key.encode()).digest()):
            found = tenant_of(key, name)
    if found is None:
        raise ApiError(ErrorType.UNAUTHORIZED, "invalid API key")
    return found


def tenant_of(key: str, name: str | None = None) -> str:
    """A key's tenant id: ``n:<name>`` for a named tenant (``name:key`` in ``tenant_keys``), else ``k:`` and a digest
    of the key, so no key is ever stored. What a tenant owns (user contexts, cached results) is keyed by it."""
    if name is not None:
        return named_tenant(name)
    return "k:" + hashlib.sha256(b"r2ec-tenant:" + key.encode()).hexdigest()[:16]


def named_tenant(name: str) -> str:
    """The tenant id of a tenant named in ``tenant_keys`` (or ``legacy_user_tenant``)."""
    return f"n:{name}"


async def require_api_key(request: Request) -> None:
    """Dependency form (the middleware already checked /v1 before the body was read; this keeps the OpenAPI
    security declaration and covers apps mounted without the middleware)."""
    request.state.tenant = check_bearer(get_state(request).settings.keyring, request.headers.get("authorization", ""))


def request_tenant(request: Request) -> str | None:
    """The tenant that ``check_bearer`` found for this request (``None`` with auth off): what it may reach."""
    return getattr(request.state, "tenant", None)
