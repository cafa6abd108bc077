"""One error type enum, mapped to HTTP status in one place, rendered in one JSON shape.

Every error the service returns -- validation included -- looks like::

    {"error": {"type": "validation_error", "message": "...", "field": "history[2].item_id", "request_id": "..."}}
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from fastapi.responses import JSONResponse


class ErrorType(StrEnum):
    BAD_REQUEST = "bad_request"
    VALIDATION = "validation_error"
    UNAUTHORIZED = "unauthorized"
    NOT_FOUND = "not_found"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    OVERLOADED = "overloaded"
    NOT_READY = "not_ready"
    DRAINING = "draining"
    DEPENDENCY = "dependency_unavailable"
    TIMEOUT = "timeout"
    INTERNAL = "internal_error"


STATUS: dict[ErrorType, int] = {
    ErrorType.BAD_REQUEST: 400,
    ErrorType.VALIDATION: 422,
    ErrorType.UNAUTHORIZED: 401,
    ErrorType.NOT_FOUND: 404,
    ErrorType.PAYLOAD_TOO_LARGE: 413,
    ErrorType.OVERLOADED: 429,
    ErrorType.NOT_READY: 503,
    ErrorType.DRAINING: 503,
    ErrorType.DEPENDENCY: 503,
    ErrorType.TIMEOUT: 504,
    ErrorType.INTERNAL: 500,
}


class ApiError(Exception):
    def __init__(self, type_: ErrorType, message: str, field: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.type = type_
        self.message = message
        self.field = field
        self.headers = headers or {}

    @property
    def status(self) -> int:
        return STATUS[self.type]


def error_body(
    type_: ErrorType, message: str, request_id: str | None, field: str | None = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": type_.value, "message": message, "request_id": request_id}
    if field is not None:
        body["field"] = field
    body.update(extra)
    return {"error": body}


def error_response(err: ApiError, request_id: str | None) -> JSONResponse:
    headers = dict(err.headers)
    if err.type == ErrorType.UNAUTHORIZED:
        headers.setdefault("WWW-Authenticate", "Bearer")
    if err.type in (ErrorType.OVERLOADED, ErrorType.NOT_READY, ErrorType.DRAINING):
        headers.setdefault("Retry-After", "1")
    return JSONResponse(
        error_body(err.type, err.message, request_id, err.field), status_code=err.status, headers=headers
    )


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """``("body", "history", 2, "item_id")`` -> ``history[2].item_id``."""
    out = ""
    for part in loc:
        if part in ("body", "query", "path", "header"):
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "body"
