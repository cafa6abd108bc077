"""SIGTERM during a request: the request finishes, new work gets 503, the process exits cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import httpx

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
    proc = subprocess.Popen([sys.executable, "-m", "r2ec.cli", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
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
