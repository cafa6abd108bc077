"""SIGTERM during a request: the request finishes, new work gets 503, the process exits cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx

from loadtests.launcher import ServerProcess
from tests.helpers import free_port


def test_sigterm_drains_in_flight_requests(tiny_bundle, tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "R2EC_BUNDLE": str(tiny_bundle),
        "R2EC_PORT": str(port),
        "R2EC_THREADS": "2",
        "R2EC_DRAIN_TIMEOUT_S": "60",
        "R2EC_MAX_REASONING_TOKENS": "512",
    }
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "entrypoints.cli", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        result: dict = {}

        def slow() -> None:
            result["r"] = httpx.post(
                url + "/v1/recommend",
                timeout=120,
                json={"history": [{"item_id": "100"}], "max_reasoning_tokens": 150, "use_cache": False},
            )

        t = threading.Thread(target=slow)
        t.start()
        while httpx.get(url + "/ready").json()["inflight"] < 1:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        late = httpx.post(url + "/v1/recommend", json={"history": [{"item_id": "100"}], "reasoning": False})
        assert late.status_code == 503 and late.json()["error"]["type"] == "draining"
        assert httpx.get(url + "/ready").status_code == 503
        t.join(120)
        assert result["r"].status_code == 200 and result["r"].json()["reasoning_tokens"] == 150
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    assert '"drained"' in (tmp_path / "serve.log").read_text()


class Served(ServerProcess):
    """``r2ec serve`` in a subprocess, as in production (signals, uvicorn, exit status)."""

    def __init__(self, bundle, tmp_path, **env_overrides: str):
        env = {"R2EC_THREADS": "2", "R2EC_MAX_MODEL_LEN": "8192", "R2EC_MAX_REASONING_TOKENS": "4000", **env_overrides}
        super().__init__(bundle, env, log=tmp_path / "serve.log")
        self.start(timeout=120)

    def long_request(self, result: dict) -> threading.Thread:
        def run() -> None:
            try:
                result["r"] = httpx.post(
                    self.url + "/v1/recommend",
                    timeout=120,
                    json={"history": [{"item_id": "100"}], "max_reasoning_tokens": 4000, "use_cache": False},
                )
            except httpx.HTTPError as exc:
                result["error"] = exc

        t = threading.Thread(target=run)
        t.start()
        while httpx.get(self.url + "/ready").json()["inflight"] < 1:
            time.sleep(0.05)
        return t

    def close(self) -> None:
        self.kill()


def test_shutdown_is_bounded_by_the_drain_timeout(tiny_bundle, tmp_path):
    """A request longer than the drain is cancelled with a 503 in the error shape; exit 0 within drain + 5 s."""
    srv = Served(tiny_bundle, tmp_path, R2EC_DRAIN_TIMEOUT_S="2")
    try:
        result: dict = {}
        t = srv.long_request(result)
        slow = socket.create_connection(("127.0.0.1", srv.port))  # a client that never finishes its headers
        slow.sendall(b"POST /v1/recommend HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        srv.signal(signal.SIGTERM)
        status = srv.wait(30)
        elapsed = time.monotonic() - started
        t.join(30)
        assert status == 0
        assert elapsed < 2 + 5, elapsed
        r = result["r"]
        assert r.status_code == 503 and r.json()["error"]["type"] == "draining", r.text
        slow.close()
    finally:
        srv.close()


def test_second_signal_exits_at_once_with_status_1(tiny_bundle, tmp_path):
    srv = Served(tiny_bundle, tmp_path, R2EC_DRAIN_TIMEOUT_S="60")
    try:
        result: dict = {}
        t = srv.long_request(result)
        srv.signal(signal.SIGTERM)
        time.sleep(0.5)
        assert srv.proc is not None and srv.proc.poll() is None  # still draining
        started = time.monotonic()
        srv.signal(signal.SIGTERM)
        status = srv.wait(15)
        assert time.monotonic() - started < 5
        assert status == 1
        t.join(30)
        if "r" in result:  # answered before the process went: then in the error shape
            assert result["r"].status_code == 503 and result["r"].json()["error"]["type"] == "draining"
    finally:
        srv.close()


def test_slow_clients_cannot_hold_connections(tiny_bundle, tmp_path):
    srv = Served(tiny_bundle, tmp_path, R2EC_HEADER_TIMEOUT_S="1", R2EC_BODY_TIMEOUT_S="1")
    try:
        headers_only = socket.create_connection(("127.0.0.1", srv.port))
        headers_only.sendall(b"POST /v1/recommend HTTP/1.1\r\nHost: x\r\n")  # never ends its headers
        headers_only.settimeout(10)
        started = time.monotonic()
        assert headers_only.recv(1024) == b""  # closed by the server
        assert time.monotonic() - started < 5

        slow_body = socket.create_connection(("127.0.0.1", srv.port))
        slow_body.sendall(
            b"POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        slow_body.settimeout(10)
        chunks = []
        while chunk := slow_body.recv(4096):  # the server closes after its 408
            chunks.append(chunk)
        reply = b"".join(chunks).decode()
        assert reply.startswith("HTTP/1.1 408"), reply
        assert '"request_timeout"' in reply
        assert httpx.get(srv.url + "/ready").status_code == 200  # everyone else is still served
    finally:
        srv.close()
