"""``r2ec``: one console script; each command group lives in its own module and registers on import."""

from __future__ import annotations

import signal

from entrypoints import bench, bundles, data, evaluation, serve, train  # noqa: F401  (they register commands)
from entrypoints.common import app


def main() -> None:
    # SIGTERM (kill, timeout(1), a pod's end) stops a command as Ctrl-C does, so its finally blocks run and an
    # engine shuts down its worker processes instead of orphaning them. `r2ec serve` replaces this with uvicorn's
    # own handlers (drain) while it serves.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    app()


if __name__ == "__main__":
    main()
