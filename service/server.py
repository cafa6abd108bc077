"""Run the app under uvicorn with a graceful drain on SIGTERM.

First SIGTERM/SIGINT: stop admitting /v1 work (503, /ready 503), let in-flight requests finish for up to
``drain_timeout_s``, then exit. A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import time
from types import FrameType
from typing import Any

import uvicorn

from r2ec import logs
from service.app import create_app
from service.settings import Settings
from service.state import ServiceState

log = logs.get(__name__)


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, state: ServiceState):
        super().__init__(config)
        self.r2ec_state = state
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[Any] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        state = self.r2ec_state
        if state.draining or self._loop is None:
            super().handle_exit(sig, frame)
            return
        state.draining = True
        log.info("draining", extra={"signal": sig, "inflight": state.inflight})
        self._loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._drain(sig, frame)))

    async def _drain(self, sig: int, frame: FrameType | None) -> None:
        state = self.r2ec_state
        deadline = time.monotonic() + state.settings.drain_timeout_s
        while state.inflight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        log.info("drained", extra={"left_inflight": state.inflight})
        super().handle_exit(sig, frame)
        # uvicorn re-raises captured signals after shutdown; a completed drain is a clean exit (status 0).
        if sig in self._captured_signals:
            self._captured_signals.remove(sig)


def run(settings: Settings) -> None:
    logs.setup(settings.log_level)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.drain_timeout_s) + 5,
    )
    DrainingServer(config, app.state.r2ec).run()
