"""Processes the benchmarks, the fault run and the tests start: ``r2ec serve`` and a Redis of their own.

One launcher for all of them, so every harness starts the server exactly as production does (the console
entry point, signals, exit status) and waits for real readiness. Loopback only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``python -m entrypoints.cli serve`` on a free loopback port with ``R2EC_*`` settings from ``env``."""

    def __init__(self, bundle: Path, env: dict[str, str] | None = None, log: Path | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log or Path(tempfile.mkstemp(prefix="r2ec-serve-", suffix=".log")[1])
        self.env = {
            **os.environ,
            "R2EC_BUNDLE": str(bundle),
            "R2EC_PORT": str(self.port),
            "OMP_WAIT_POLICY": "PASSIVE",
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 600) -> ServerProcess:
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "entrypoints.cli", "serve"], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError, ValueError):
                r = httpx.get(self.url + "/ready", timeout=2)
                if r.status_code == 200:
                    return self
                if r.json().get("error"):
                    raise RuntimeError(f"server failed to start: {r.json()['error']}")
            time.sleep(0.2)
        self.kill()
        raise TimeoutError(f"server did not become ready in {timeout:g} s")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 60) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 60) -> int | None:
        """SIGTERM (a graceful drain), then SIGKILL if it does not exit in time."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


class RedisServer:
    """A real ``redis-server`` of the caller's own on a free port (never the machine's shared one)."""

    def __init__(self, args: list[str] | None = None):
        self.port = free_port()
        self.args = args if args is not None else ["--save", "", "--appendonly", "no"]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed")
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", *self.args], stdout=subprocess.DEVNULL
        )
        import redis

        for _ in range(200):
            try:
                redis.Redis(port=self.port).ping()
                return
            except redis.exceptions.RedisError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        """SIGTERM: Redis flushes its append-only file and exits, as in a rolling restart."""
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(30)
            self.proc = None
