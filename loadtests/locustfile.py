"""Locust traffic for r2ec-serve, built from a real dataset's user histories.

    locust -f loadtests/locustfile.py --headless --host http://127.0.0.1:8000 -u 8 -r 8 -t 60s \
        --data ~/.cache/r2ec/data/ml-100k --w-stream 1 --csv results/locust --json

Mix (weights, all configurable): reasoning requests (fresh histories, never cached), reasoning-free requests,
cache-hit requests (a small fixed pool of histories asked again and again) and, optionally, streaming requests
that report time to the first reasoning delta and to the result as custom request type ``SSE``, names ``ttft``
and ``result`` (in locust's summary, CSV and JSON like any request).
Modes: ``--mode concurrency`` (closed loop: each user sends its next request when the last returns) or
``--mode rate --rate R`` (open loop: Poisson arrivals at R requests/s spread over the users).
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

from locust import FastHttpUser, events, task
from locust.env import Environment

from loadtests.sse import iter_sse
from loadtests.stats import load_histories

HISTORIES: list[list[dict[str, Any]]] = []
HOT: list[list[dict[str, Any]]] = []


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument(
        "--data",
        type=str,
        default=str(Path.home() / ".cache/r2ec/data/ml-100k"),
        help="Dataset directory whose user histories drive the traffic.",
    )
    parser.add_argument("--window", type=int, default=20, help="Events per history.")
    parser.add_argument("--reasoning-tokens", type=int, default=64, help="max_reasoning_tokens per request.")
    parser.add_argument("--w-reasoning", type=int, default=4, help="Weight of reasoning requests.")
    parser.add_argument("--w-no-reasoning", type=int, default=2, help="Weight of reasoning-free requests.")
    parser.add_argument("--w-cache-hit", type=int, default=2, help="Weight of repeated (cacheable) requests.")
    parser.add_argument("--w-stream", type=int, default=0, help="Weight of streaming requests (TTFT metric).")
    parser.add_argument("--hot-pool", type=int, default=8, help="Distinct histories behind cache-hit requests.")
    parser.add_argument("--mode", choices=["concurrency", "rate"], default="concurrency")
    parser.add_argument("--rate", type=float, default=1.0, help="Total requests/s in rate mode (Poisson).")
    parser.add_argument("--api-key", type=str, default="", help="Bearer key for /v1.")
    parser.add_argument("--seed", type=int, default=0)


@events.init.add_listener
def _setup(environment: Environment, **_: Any) -> None:
    opts = environment.parsed_options
    if opts is None:
        return
    HISTORIES[:] = load_histories(Path(opts.data), opts.window, seed=opts.seed)
    HOT[:] = HISTORIES[: opts.hot_pool]
    weighted: list[Any] = (
        [R2ecUser.reasoning] * opts.w_reasoning
        + [R2ecUser.no_reasoning] * opts.w_no_reasoning
        + [R2ecUser.cache_hit] * opts.w_cache_hit
        + [R2ecUser.stream] * opts.w_stream
    )
    R2ecUser.tasks = weighted


class R2ecUser(FastHttpUser):
    network_timeout = 300.0
    connection_timeout = 10.0

    def wait_time(self) -> float:
        opts = self.environment.parsed_options
        if opts is None or opts.mode == "concurrency":
            return 0.0
        users = max(1, self.environment.runner.user_count if self.environment.runner else 1)
        return random.expovariate(opts.rate / users)  # Poisson arrivals, rate split over users

    def _headers(self) -> dict[str, str]:
        opts = self.environment.parsed_options
        return {"Authorization": f"Bearer {opts.api_key}"} if opts is not None and opts.api_key else {}

    def _post(self, name: str, body: dict[str, Any]) -> None:
        with self.client.post("/v1/recommend", json=body, name=name, headers=self._headers(), catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"{r.status_code}: {r.text[:200]}")

    def _tokens(self) -> int:
        opts = self.environment.parsed_options
        return int(opts.reasoning_tokens) if opts is not None else 64

    @task
    def reasoning(self) -> None:
        self._post(
            "reasoning",
            {"history": random.choice(HISTORIES), "k": 10, "max_reasoning_tokens": self._tokens(), "use_cache": False},
        )

    @task
    def no_reasoning(self) -> None:
        self._post(
            "no_reasoning", {"history": random.choice(HISTORIES), "k": 10, "reasoning": False, "use_cache": False}
        )

    @task
    def cache_hit(self) -> None:
        self._post("cache_hit", {"history": random.choice(HOT), "k": 10, "max_reasoning_tokens": self._tokens()})

    @task
    def stream(self) -> None:
        """Read the SSE body as it arrives: time to the first reasoning delta (``SSE ttft``) and to the result
        event (``SSE result``) are custom metrics; a stream without ``[DONE]`` or with ``event: error`` fails."""
        body = {
            "history": random.choice(HISTORIES),
            "k": 10,
            "max_reasoning_tokens": self._tokens(),
            "use_cache": False,
        }
        started = time.perf_counter()
        first: float | None = None
        result: float | None = None
        problem: str | None = None
        with self.client.post(
            "/v1/recommend/stream", json=body, name="stream", headers=self._headers(), stream=True, catch_response=True
        ) as r:
            if r.status_code != 200:
                r.failure(f"{r.status_code}: {(r.text or '')[:200]}")
                return
            done = False
            for ev in iter_sse(r.iter_content(chunk_size=256, decode_content=True)):
                now = time.perf_counter()
                if ev.event == "reasoning" and first is None:
                    first = now
                elif ev.event == "result" and result is None:
                    result = now
                elif ev.event == "error":
                    problem = f"event: error {ev.data[:200]}"
                elif ev.data == "[DONE]":
                    done = True
            if problem is None and not done:
                problem = "stream ended without [DONE]"
            if problem is not None:
                r.failure(problem)
            else:
                r.success()
        for name, at in (("ttft", first), ("result", result)):
            if at is not None and problem is None:
                events.request.fire(
                    request_type="SSE",
                    name=name,
                    response_time=(at - started) * 1000,
                    response_length=0,
                    exception=None,
                    context={},
                )


if __name__ == "__main__":
    print(json.dumps({"histories": len(load_histories(Path.home() / ".cache/r2ec/data/ml-100k", 20, 10))}))
