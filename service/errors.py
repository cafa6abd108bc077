"""One error type enum, mapped to HTTP status in one place, rendered in one JSON shape.

Every error the service returns -- validation included -- looks like::

    {"error": {"type": "validation_error", "message": "...", "field": "history[2].item_id", "request_id": "..."}}
"""

from __future__ import annotations

from enum import StrEnum
from http import HTTPStatus
from typing import Any

from fastapi.responses import JSONResponse

from r2ec.engine.base import EngineClosed, EngineOverloaded, InvalidRequest
from service.user_store import StoreUnavailable


class ErrorType(StrEnum):
    BAD_REQUEST = "bad_request"
    VALIDATION = "validation_error"
    UNAUTHORIZED = "unauthorized"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    HEADERS_TOO_LARGE = "request_header_fields_too_large"
    REQUEST_TIMEOUT = "request_timeout"
    OVERLOADED = "overloaded"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    NOT_READY = "not_ready"
    DRAINING = "draining"
    DEPENDENCY = "dependency_unavailable"
    TIMEOUT = "timeout"
    CLIENT_CLOSED = "client_closed_request"
    INTERNAL = "internal_error"


STATUS: dict[ErrorType, int] = {
    ErrorType.BAD_REQUEST: 400,
    ErrorType.VALIDATION: 422,
    ErrorType.UNAUTHORIZED: 401,
    ErrorType.NOT_FOUND: 404,
    ErrorType.METHOD_NOT_ALLOWED: 405,
    ErrorType.PAYLOAD_TOO_LARGE: 413,
    ErrorType.HEADERS_TOO_LARGE: 431,
    ErrorType.REQUEST_TIMEOUT: 408,
    ErrorType.OVERLOADED: 429,
    ErrorType.TOO_MANY_CONNECTIONS: 503,
    ErrorType.NOT_READY: 503,
    ErrorType.DRAINING: 503,
    ErrorType.DEPENDENCY: 503,
    ErrorType.TIMEOUT: 504,
    ErrorType.CLIENT_CLOSED: 499,  # nginx's code: nobody reads it, but logs and metrics tell it apart
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


# The one table from exceptions to API errors: the handlers and the SSE error event both go through it. The
# client-facing message is generic where the exception could carry internals (addresses, paths); the detail goes
# to the log under the request id.
EXCEPTIONS: tuple[tuple[type[Exception], ErrorType, str | None], ...] = (
    (InvalidRequest, ErrorType.VALIDATION, None),
    (EngineOverloaded, ErrorType.OVERLOADED, "the engine is at capacity; retry shortly"),
    (EngineClosed, ErrorType.NOT_READY, "the model is not available"),
    (StoreUnavailable, ErrorType.DEPENDENCY, "user contexts are unavailable right now"),
    (TimeoutError, ErrorType.TIMEOUT, "the request deadline was exceeded"),
)


def to_api_error(exc: BaseException) -> ApiError:
    """Map any exception to the API error a client sees; unknown ones are a generic internal error."""
    if isinstance(exc, ApiError):
        return exc
    for kind, type_, message in EXCEPTIONS:
        if isinstance(exc, kind):
            field = getattr(exc, "field", None)
            return ApiError(type_, message or str(exc), field)
    return ApiError(ErrorType.INTERNAL, "internal error")


def error_body(
    type_: ErrorType, message: str, request_id: str | None, field: str | None = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": type_.value, "message": message, "request_id": request_id}
    if field is not None:
        body["field"] = field
    body.update(extra)
    return {"error": body}


def error_response(err: ApiError, request_id: str | None, close: bool = False) -> JSONResponse:
    """The error in the one shape; ``close``: the connection is closed after it (a body left unread, a client
    refused before its request was read)."""
    headers = dict(err.headers)
    if close:
        headers["connection"] = "close"
    if err.type == ErrorType.UNAUTHORIZED:
        headers.setdefault("WWW-Authenticate", "Bearer")
    if err.type in (ErrorType.OVERLOADED, ErrorType.TOO_MANY_CONNECTIONS, ErrorType.NOT_READY, ErrorType.DRAINING):
        headers.setdefault("Retry-After", "1")
    return JSONResponse(
        error_body(err.type, err.message, request_id, err.field), status_code=err.status, headers=headers
    )


def raw_error_response(err: ApiError, request_id: str | None) -> bytes:
    """The same reply as ``error_response`` as HTTP/1.1 bytes, with the connection closed after it: for the
    server's protocol, which answers some requests before any ASGI app has a request to answer."""
    response = error_response(err, request_id, close=True)
    head = [f"HTTP/1.1 {response.status_code} {HTTPStatus(response.status_code).phrase}".encode("latin-1")]
    head += [name + b": " + value for name, value in response.raw_headers]
    return b"\r\n".join(head) + b"\r\n\r\n" + bytes(response.body)


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
