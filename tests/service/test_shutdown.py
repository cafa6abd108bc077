"""SIGTERM during a request: the request finishes, new work gets 503, the process exits cleanly."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time

import httpx

from loadtests.launcher import ServerProcess


class Served(ServerProcess):
    """``r2ec serve`` in a subprocess, as in production (signals, uvicorn, exit status); killed on leaving ``with``."""

    def __init__(self, bundle, tmp_path, **env_overrides: str):
        env = {"R2EC_THREADS": "2", "R2EC_MAX_MODEL_LEN": "8192", "R2EC_MAX_REASONING_TOKENS": "4000", **env_overrides}
        super().__init__(bundle, env, log=tmp_path / "serve.log")
        self.start(timeout=120)

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill()

    def long_request(self, result: dict, tokens: int = 4000) -> threading.Thread:
        """A request of ``tokens`` reasoning tokens in a thread, returned once the server has it in flight."""

        def run() -> None:
            try:
                result["r"] = httpx.post(
                    self.url + "/v1/recommend",
                    timeout=120,
                    json={"history": [{"item_id": "100"}], "max_reasoning_tokens": tokens, "use_cache": False},
                )
            except httpx.HTTPError as exc:
                result["error"] = exc

        t = threading.Thread(target=run)
        t.start()
        while httpx.get(self.url + "/ready").json()["inflight"] < 1:
            time.sleep(0.05)
        return t


def test_sigterm_drains_in_flight_requests(tiny_bundle, tmp_path):
    with Served(tiny_bundle, tmp_path, R2EC_DRAIN_TIMEOUT_S="60", R2EC_MAX_REASONING_TOKENS="512") as srv:
        result: dict = {}
        t = srv.long_request(result, tokens=150)
        srv.signal(signal.SIGTERM)
        time.sleep(0.3)
        late = httpx.post(srv.url + "/v1/recommend", json={"history": [{"item_id": "100"}], "reasoning": False})
        assert late.status_code == 503 and late.json()["error"]["type"] == "draining"
        assert httpx.get(srv.url + "/ready").status_code == 503
        t.join(120)
        assert result["r"].status_code == 200 and result["r"].json()["reasoning_tokens"] == 150
        assert srv.wait(60) == 0
    assert '"drained"' in srv.log()


def test_shutdown_is_bounded_by_the_drain_timeout(tiny_bundle, tmp_path):
    """A request longer than the drain is cancelled with a 503 in the error shape; exit 0 within drain + 5 s."""
    with Served(tiny_bundle, tmp_path, R2EC_DRAIN_TIMEOUT_S="2") as srv:
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


def test_second_signal_exits_at_once_with_status_1(tiny_bundle, tmp_path):
    with Served(tiny_bundle, tmp_path, R2EC_DRAIN_TIMEOUT_S="60") as srv:
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


def test_slow_clients_cannot_hold_connections(tiny_bundle, tmp_path):
    with Served(tiny_bundle, tmp_path, R2EC_HEADER_TIMEOUT_S="1", R2EC_BODY_TIMEOUT_S="1") as srv:
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


def _reply(sock: socket.socket) -> str:
    sock.settimeout(10)
    chunks = []
    while chunk := sock.recv(4096):  # until the server closes
        chunks.append(chunk)
    return b"".join(chunks).decode()


def test_headers_past_their_limit_get_431_and_held_connections_cannot_fail_the_probes(tiny_bundle, tmp_path):
    with Served(tiny_bundle, tmp_path, R2EC_MAX_HEADER_BYTES="4096", R2EC_MAX_CONNECTIONS="4") as srv:
        assert httpx.get(srv.url + "/info", headers={"x-pad": "a" * 3000}).status_code == 200  # within the limit
        for head in (b"GET /info HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 3000, b"GET /" + b"a" * 3000):
            big = socket.create_connection(("127.0.0.1", srv.port))
            big.sendall(head)  # a header / a request line that never ends, sent in pieces past the limit
            big.sendall(b"b" * 3000)
            reply = _reply(big)
            assert reply.startswith("HTTP/1.1 431"), reply[:200]
            assert '"request_header_fields_too_large"' in reply and "connection: close" in reply
            assert json.loads(reply.partition("\r\n\r\n")[2])["error"]["request_id"]

        garbage = socket.create_connection(("127.0.0.1", srv.port))
        garbage.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        reply = _reply(garbage)
        assert reply.startswith("HTTP/1.1 400") and '"bad_request"' in reply, reply[:200]  # the one shape

        held = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(4)]  # idle, as many as allowed
        try:
            time.sleep(0.5)
            with httpx.Client(base_url=srv.url, timeout=10) as c:
                assert c.get("/health").status_code == 200
                assert c.get("/ready").status_code == 200
                assert c.get("/metrics").status_code == 200
                busy = c.get("/info")
            assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
            assert busy.json()["error"]["type"] == "too_many_connections" and busy.json()["error"]["request_id"]
        finally:
            for s in held:
                s.close()
        time.sleep(0.5)
        assert httpx.get(srv.url + "/info").status_code == 200


def test_a_thread_left_running_cannot_keep_the_process_alive(tmp_path):
    """``bound_exit``: a non-daemon thread that would hold the interpreter for a minute is cut at the bound, with
    every thread's stack in stderr; a process that exits in time is not touched (status of its own)."""
    import subprocess
    import sys

    script = (
        "import threading, time\n"
        "from service.server import bound_exit\n"
        "threading.Thread(target=time.sleep, args=({hold},), name='left-running').start()\n"
        "bound_exit(1.0, lambda: 0)\n"
        "raise SystemExit({status})\n"
    )
    started = time.monotonic()
    stuck = subprocess.run(
        [sys.executable, "-c", script.format(hold=60, status=3)], capture_output=True, text=True, timeout=30
    )
    assert stuck.returncode == 0  # bound_exit's status, not the 3 the thread kept from being returned
    assert time.monotonic() - started < 20
    assert "overran its bound" in stuck.stderr
    assert "in _shutdown" in stuck.stderr  # the main thread's stack: waiting on the thread at interpreter exit
    clean = subprocess.run(
        [sys.executable, "-c", script.format(hold=0, status=3)], capture_output=True, text=True, timeout=30
    )
    assert clean.returncode == 3 and "Thread 0x" not in clean.stderr
