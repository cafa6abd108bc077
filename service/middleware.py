"""The service's pure ASGI middleware (safe with streaming and cancellation): request id, timing header, body
limit and body timeout, bearer auth and the drain gate for /v1, and per-route request metrics."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.auth import check_bearer
from service.errors import ApiError, ErrorType, error_response
from service.replies import HEADERS
from service.state import ServiceState

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
REPLAYED_ROUTE = "/v1/recommend"


class RequestContext:
    """Pure ASGI middleware (safe with streaming and cancellation): request id, timing header, body limit,
    the drain gate for /v1, and per-route request metrics."""

    def __init__(self, app: ASGIApp, state: ServiceState):
        self.app = app
        self.state = state

    async def _reply(self, send: Send, err: ApiError, rid: str, close: bool = False) -> None:
        response = error_response(err, rid, close)
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": [*response.raw_headers, (b"x-request-id", rid.encode())],
            }
        )
        await send({"type": "http.response.body", "body": response.body})

    async def _replay(
        self, scope: Scope, body: list[Message], send: Send, rid: str, started: float, status: dict[str, int]
    ) -> bool:
        """Answer an identical replayable recommend request from ``state.replies`` (``service.replies``); else
        leave the key in the request state for the route to store its reply under."""
        st = self.state
        if st.replies is None or st.bundle is None or scope["method"] != "POST" or scope["path"] != REPLAYED_ROUTE:
            return False
        data = b"".join(m.get("body", b"") for m in body if m["type"] == "http.request")
        key = st.replies.key(st.bundle.version, scope["state"].get("tenant"), data)
        reply = st.replies.get(key)
        if reply is None:
            scope["state"]["reply_key"] = key
            return False
        total_ms = (time.perf_counter() - started) * 1000
        status["status"] = 200
        headers = [*HEADERS, (b"x-request-id", rid.encode()), (b"x-total-time-ms", f"{total_ms:.1f}".encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body(rid, total_ms)})
        st.metrics.cache.labels("hit").inc()
        return True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        rid = headers.get("x-request-id", "")
        if not _REQUEST_ID.match(rid):
            rid = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        path: str = scope["path"]
        status_holder = {"status": 500}
        limit = self.state.settings.max_body_bytes
        metrics = self.state.metrics

        def route_label() -> str:
            route = scope.get("route")
            return getattr(route, "path", None) or ("/v1/*" if path.startswith("/v1") else "other")

        def observe(label: str | None = None) -> None:
            label = label or route_label()
            metrics.requests.labels(label, str(status_holder["status"])).inc()
            metrics.latency.labels(label).observe(time.perf_counter() - started)

        async def refuse(err: ApiError, close: bool = False) -> None:
            """Answer before the app runs (auth, drain, body limit or timeout), and count it."""
            status_holder["status"] = err.status
            await self._reply(send, err, rid, close)
            observe()

        if path.startswith("/v1"):
            # Auth before anything else, the body included: an unauthenticated client learns nothing (no 400/422).
            if sum(k.lower() == b"authorization" for k, _ in scope["headers"]) > 1:
                # The check here and the route's dependency would read different ones (the last, the first).
                await refuse(ApiError(ErrorType.BAD_REQUEST, "more than one Authorization header"))
                return
            try:
                scope["state"]["tenant"] = check_bearer(self.state.settings.keyring, headers.get("authorization", ""))
            except ApiError as denied:
                await refuse(denied)
                return
        if path.startswith("/v1") and self.state.draining:
            await refuse(ApiError(ErrorType.DRAINING, "the server is shutting down"))
            return
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await refuse(ApiError(ErrorType.PAYLOAD_TOO_LARGE, f"body exceeds {limit} bytes"), close=True)
            return

        replay: list[Message] = []
        if scope["method"] in ("POST", "PUT", "PATCH"):
            # Read the body up front (bounded by the limit) so an oversized chunked upload gets a clean 413.
            received = 0
            body_deadline = asyncio.get_running_loop().time() + self.state.settings.body_timeout_s
            while True:
                try:
                    async with asyncio.timeout_at(body_deadline):
                        message = await receive()
                except TimeoutError:
                    late = ApiError(ErrorType.REQUEST_TIMEOUT, "the request body did not arrive in time")
                    await refuse(late, close=True)
                    return
                replay.append(message)
                if message["type"] != "http.request":
                    break
                received += len(message.get("body", b""))
                if received > limit:
                    # Closed: else uvicorn would go on reading (and dropping) the rest of the body.
                    await refuse(ApiError(ErrorType.PAYLOAD_TOO_LARGE, f"body exceeds {limit} bytes"), close=True)
                    return
                if not message.get("more_body", False):
                    break

        if await self._replay(scope, replay, send, rid, started, status_holder):
            observe(REPLAYED_ROUTE)
            return

        async def replaying_receive() -> Message:
            if replay:
                return replay.pop(0)
            return await receive()

        started_response = {"sent": False}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                started_response["sent"] = True
                status_holder["status"] = message["status"]
                extra = [
                    (b"x-request-id", rid.encode()),
                    (b"x-total-time-ms", f"{(time.perf_counter() - started) * 1000:.1f}".encode()),
                ]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            await self.app(scope, replaying_receive, send_with_headers)
        except asyncio.CancelledError:
            # Cancelled by the shutdown (drain deadline or a second signal): answer in the error shape, not
            # uvicorn's plain-text 500, if nothing was sent yet.
            if not started_response["sent"]:
                status_holder["status"] = 503
                with contextlib.suppress(Exception):
                    await self._reply(send, ApiError(ErrorType.DRAINING, "the server shut down first"), rid)
            raise
        finally:
            observe()
