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


class Process:
    """A server subprocess on a free loopback port, ready once ``ready_path`` answers 200; its output goes to a log
    file. Subclasses say what to run (``command``) and may refine readiness (``failed``)."""

    ready_path = "/ready"
    name = "server"

    def __init__(self, env: dict[str, str] | None = None, log: Path | None = None, drop_env: tuple[str, ...] = ()):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log or Path(tempfile.mkstemp(prefix=f"r2ec-{self.name}-", suffix=".log")[1])
        base = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}  # a server's own threads sleep when idle, unless dropped
        self.env = {**{k: v for k, v in base.items() if k not in drop_env}, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def failed(self, response: httpx.Response) -> str | None:
        """A readiness answer that means the server will never be ready (its reason), else None."""
        return None

    def start(self, timeout: float = 600) -> Process:
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(self.command(), env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server {self.name!r} exited with {self.proc.returncode}: {self.log()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError, ValueError):
                r = httpx.get(self.url + self.ready_path, timeout=2)
                if r.status_code == 200:
                    return self
                reason = self.failed(r)
                if reason is not None:
                    raise RuntimeError(f"server {self.name!r} failed to start: {reason}")
            time.sleep(0.2)
        self.kill()
        raise TimeoutError(f"server {self.name!r} did not become ready in {timeout:g} s")

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


class ServerProcess(Process):
    """``python -m entrypoints.cli serve`` on a free loopback port with ``R2EC_*`` settings from ``env``."""

    name = "serve"

    def __init__(self, bundle: Path, env: dict[str, str] | None = None, log: Path | None = None):
        super().__init__(None, log)
        self.env |= {"R2EC_BUNDLE": str(bundle), "R2EC_PORT": str(self.port), **(env or {})}

    def command(self) -> list[str]:
        return [sys.executable, "-m", "entrypoints.cli", "serve"]

    def failed(self, response: httpx.Response) -> str | None:
        error = response.json().get("error")
        return str(error) if error else None

    def start(self, timeout: float = 600) -> ServerProcess:
        super().start(timeout)
        return self


class VLLMServer(Process):
    """vLLM's own OpenAI-compatible server (``python -m vllm.entrypoints.openai.api_server``) on a free loopback
    port, serving ``model`` under the name ``served_name`` with the engine arguments ``args`` (flags, e.g.
    ``["--dtype", "float32"]``). ``VLLM_*`` variables a caller's in-process engine set in this process are not
    passed on (``drop_env``): the server runs as vLLM runs it unless ``env`` says otherwise."""

    ready_path = "/health"
    name = "vllm"

    def __init__(
        self,
        model: Path,
        served_name: str,
        args: list[str],
        env: dict[str, str] | None = None,
        log: Path | None = None,
        # OMP_WAIT_POLICY: the forward's OpenMP threads run in the server's engine core, with the runtime's default
        # policy as a user's vLLM server has it and as `r2ec serve` spawns its own (vllm_omp_wait_policy auto).
        drop_env: tuple[str, ...] = ("VLLM_ENABLE_V1_MULTIPROCESSING", "VLLM_USE_V2_MODEL_RUNNER", "OMP_WAIT_POLICY"),
    ):
        super().__init__(env, log, drop_env)
        self.model, self.served_name, self.args = model, served_name, list(args)

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(self.model),
            "--served-model-name",
            self.served_name,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--uvicorn-log-level",
            "warning",
            "--disable-uvicorn-access-log",
            *self.args,
        ]


class FloorServer(Process):
    """``python -m loadtests.floor``: bare FastAPI under uvicorn answering with the bytes of ``body``."""

    name = "floor"

    def __init__(self, body: Path, log: Path | None = None):
        super().__init__(None, log)
        self.body = body

    def command(self) -> list[str]:
        return [sys.executable, "-m", "loadtests.floor", "--port", str(self.port), "--body", str(self.body)]


def start_all(servers: list[Process], timeout: float = 600) -> None:
    """Start ``servers`` side by side (their start-ups overlap); if one fails, stop every one and raise."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(servers)) as pool:
        futures = [pool.submit(s.start, timeout) for s in servers]
        errors = [f.exception() for f in futures]
    failed = [e for e in errors if e is not None]
    if failed:
        for s in servers:
            s.stop()
        raise failed[0]


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
