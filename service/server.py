"""Run the app under uvicorn with a bounded, graceful shutdown and explicit connection limits.

Shutdown (documented in the README):
* first SIGTERM/SIGINT: stop admitting /v1 work (503, /ready 503) and let in-flight requests finish for up to
  ``drain_timeout_s``; requests still running then are cancelled and answered 503 in the error shape; idle and
  half-sent connections are closed; exit status 0. The whole shutdown takes at most ``drain_timeout_s`` plus
  ``SHUTDOWN_MARGIN_S`` (closing the engine included), so the Kubernetes grace period (preStop + drain + 5 s) holds.
* a second signal while draining: cancel everything in flight at once (503 in the error shape) and exit with
  status ``FORCED_EXIT_STATUS`` (1).

Connection limits: ``keep_alive_s`` for idle keep-alive connections, ``header_timeout_s`` for a request's headers
to arrive (slow-header clients are closed), ``max_header_bytes`` for their size (431), ``body_timeout_s`` for its
body (408, in the middleware), and ``max_connections`` concurrent connections (503 beyond, the probes and
/metrics excepted).
"""

from __future__ import annotations

import asyncio
import faulthandler
import os
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from r2ec import logs
from r2ec.index import IndexDeviceError, check_device
from service.app import create_app
from service.errors import ApiError, ErrorType, error_response, raw_error_response
from service.settings import Settings
from service.state import ServiceState

log = logs.get(__name__)
SHUTDOWN_MARGIN_S = 3.0
FORCED_EXIT_STATUS = 1
EXIT_GRACE_S = 1.5  # past drain + margin: what a leftover thread may still take before the process is ended


def bound_exit(seconds: float, status: Callable[[], int]) -> threading.Timer:
    """End the process ``seconds`` from now if it is still alive: every thread's stack goes to stderr (the log)
    first, then ``os._exit(status())``. A thread that a library left running (an engine's, a client's) must not
    keep a drained server alive past its documented bound, nor hide why it would have. The timer is a daemon:
    a process that exits in time never sees it fire."""

    def fire() -> None:
        log.error("shutdown overran its bound; dumping threads and exiting", extra={"after_s": seconds})
        faulthandler.dump_traceback(all_threads=True)
        os._exit(status())

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    return timer


# Answered past the connection limit: a client holding connections must not fail the kubelet's probes (a restart)
# nor blind the scrape that would show it.
UNLIMITED_PATHS = frozenset({"/health", "/ready", "/metrics"})


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """httptools' protocol plus what neither it nor uvicorn bounds: a deadline for a request's headers (a client
    that opens a connection, or starts a request, and dribbles its headers is disconnected after
    ``header_timeout_s``) and their size (a request line + headers past ``max_header_bytes`` gets a 431 in the
    error shape and the connection is closed; checked per read, so at most one read more is buffered). What the
    parser cannot read gets a 400 in the error shape (uvicorn's is plain text). Past ``max_connections``
    (uvicorn's ``limit_concurrency``), a request gets a 503 in the error shape instead of uvicorn's plain text,
    except the probes and ``/metrics`` (``UNLIMITED_PATHS``)."""

    header_timeout_s = 10.0
    max_header_bytes = 64 << 10

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        self._headers_done = False
        self._header_bytes = 0
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_deadline)

    def _header_deadline(self) -> None:
        if not self._headers_done and not self.transport.is_closing():
            log.info("closing a connection whose headers did not arrive in time", extra={"client": str(self.client)})
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        pending = not self._headers_done
        super().data_received(data)
        # Counted per read that leaves headers pending: the read that ends them is not counted (it may carry a body),
        # so headers may end up to one read past the limit; a keep-alive connection's next request starts from zero
        # (on_message_begin).
        if pending and not self._headers_done and not self.transport.is_closing():
            self._header_bytes += len(data)
            if self._header_bytes > self.max_header_bytes:
                limit = f"request line and headers exceed {self.max_header_bytes} bytes"
                self._refuse(
                    ApiError(ErrorType.HEADERS_TOO_LARGE, limit), "closing a connection whose headers are too large"
                )

    def send_400_response(self, msg: str) -> None:
        """What the parser could not read (uvicorn answers it in plain text) answered in the error shape."""
        self._refuse(ApiError(ErrorType.BAD_REQUEST, msg), "closing a connection whose request could not be parsed")

    def _refuse(self, err: ApiError, why: str) -> None:
        """Answer before any request was read, and close the connection."""
        rid = uuid.uuid4().hex  # no request id was read: one to find this line of the log by
        log.info(why, extra={"client": str(self.client), "request_id": rid, "status": err.status})
        self.transport.write(raw_error_response(err, rid))
        self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if getattr(self, "_headers_done", True):  # a keep-alive connection's next request
            self._header_timer.cancel()
            self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._headers_done = True
        self._header_timer.cancel()
        limit = self.limit_concurrency
        if limit is None or (len(self.connections) < limit and len(self.tasks) < limit):
            super().on_headers_complete()
            return
        # Past the limit: uvicorn would answer it with its own plain-text 503; this answers it as the service does,
        # or lets it through. The parse is uvicorn's own (the path it then puts in the scope).
        path = urllib.parse.unquote(httptools.parse_url(self.url).path.decode("ascii"))
        app = self.app
        if path not in UNLIMITED_PATHS:
            self.app = _too_many_connections
        self.limit_concurrency = None
        try:
            super().on_headers_complete()
        finally:
            self.limit_concurrency, self.app = limit, app

    def connection_lost(self, exc: Exception | None) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
        super().connection_lost(exc)


async def _too_many_connections(scope: Any, receive: Any, send: Any) -> None:
    rid = uuid.uuid4().hex
    log.warning("refused past the connection limit", extra={"request_id": rid, "path": scope.get("path")})
    err = ApiError(ErrorType.TOO_MANY_CONNECTIONS, "the server has too many open connections; retry shortly")
    await error_response(err, rid, close=True)(scope, receive, send)


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, state: ServiceState):
        super().__init__(config)
        self.r2ec_state = state
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Future[None] | None = None
        self.forced = False
        self.finished = False  # serve() returned: drained, lifespan shut down (the engine closed)

    async def serve(self, sockets: list[Any] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)
        self.finished = True

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        state = self.r2ec_state
        if self._loop is None:
            super().handle_exit(sig, frame)
            return
        if state.draining:
            # Second signal: cancel what is in flight and go now.
            self.forced = True
            log.warning("second signal: cancelling in-flight requests", extra={"inflight": state.inflight})
            self._loop.call_soon_threadsafe(self._cancel_requests)
            self.should_exit = True
            self.force_exit = True
            return
        state.draining = True
        log.info("draining", extra={"signal": sig, "inflight": state.inflight})
        bound_exit(
            state.settings.drain_timeout_s + SHUTDOWN_MARGIN_S + EXIT_GRACE_S,
            lambda: 0 if self.finished else FORCED_EXIT_STATUS,
        )
        self._loop.call_soon_threadsafe(lambda: setattr(self, "_drain_task", asyncio.ensure_future(self._drain())))

    def _cancel_requests(self) -> None:
        for task in list(self.server_state.tasks):
            task.cancel(msg="server shutting down")

    async def _drain(self) -> None:
        state = self.r2ec_state
        deadline = time.monotonic() + state.settings.drain_timeout_s
        while state.inflight > 0 and time.monotonic() < deadline and not self.forced:
            await asyncio.sleep(0.05)
        if state.inflight > 0:
            log.warning("drain timeout: cancelling in-flight requests", extra={"left_inflight": state.inflight})
            self._cancel_requests()
        log.info("drained", extra={"left_inflight": state.inflight})
        self.should_exit = True


def run(settings: Settings, default_bundle: Callable[[], Path] | None = None) -> None:
    logs.setup(settings.log_level)
    try:
        check_device(settings.index_device)
    except IndexDeviceError as exc:
        raise SystemExit(f"error: {exc}") from None
    app = create_app(settings, default_bundle=default_bundle)
    GuardedHttpToolsProtocol.header_timeout_s = settings.header_timeout_s
    GuardedHttpToolsProtocol.max_header_bytes = settings.max_header_bytes
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        http=GuardedHttpToolsProtocol,
        timeout_keep_alive=int(settings.keep_alive_s),
        limit_concurrency=settings.max_connections,
        # The drain above already waited for in-flight requests: what is left is closing sockets.
        timeout_graceful_shutdown=int(SHUTDOWN_MARGIN_S),
    )
    server = DrainingServer(config, app.state.r2ec)
    server.run()  # handle_exit never records a signal for uvicorn to re-raise: a drained shutdown exits 0
    if server.forced:
        os._exit(FORCED_EXIT_STATUS)  # the engine's threads and subprocesses must not keep a forced exit waiting


__all__ = ["FORCED_EXIT_STATUS", "SHUTDOWN_MARGIN_S", "DrainingServer", "GuardedHttpToolsProtocol", "run"]
