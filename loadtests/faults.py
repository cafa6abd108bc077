"""Fault injection: mixed load on a real ``r2ec serve`` while its Redis is stopped and restarted, then SIGTERM.

    python -m loadtests.faults --bundle BUNDLE [--seconds 60] [--docs docs/benchmarks.md] [--out results/faults.json]

Redis runs with the shipped flags (docker/compose.yaml's command: AOF fsynced every second, noeviction) in a
temporary directory. The load mixes reasoning-free and short-reasoning recommendations, user-event writes and
reads. Timeline: Redis stops at 25% of the run and comes back at 45%; SIGTERM goes to the server at 90%. It
prints requests by status, and checks: no 5xx, every failure a documented 503 (or a refused connection once the
server has exited), and every user event the API acknowledged is in Redis after the restart. Loopback only;
bounded in time. Exit status 1 if a check fails.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from loadtests.launcher import RedisServer, ServerProcess

ROOT = Path(__file__).resolve().parents[1]
DOC_START, DOC_END = "<!-- faults:start -->", "<!-- faults:end -->"


def shipped_redis_args(data_dir: Path) -> list[str]:
    command = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())["services"]["redis"]["command"]
    args = list(command[1:])
    args[args.index("--dir") + 1] = str(data_dir)
    return args


def run_faults(bundle: Path, seconds: float, workers: int = 6, seed: int = 0) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="r2ec-faults-"))
    redis = RedisServer(shipped_redis_args(tmp))
    redis.start()
    env = {"R2EC_REDIS_URL": redis.url, "R2EC_DRAIN_TIMEOUT_S": "10", "R2EC_LOG_LEVEL": "warning"}
    server = ServerProcess(bundle, env, log=tmp / "serve.log").start(timeout=300)
    url = server.url
    catalog = [json.loads(line)["item_id"] for line in (bundle / "catalog.jsonl").read_text().splitlines()[:200]]
    counts: collections.Counter[str] = collections.Counter()
    unexpected: list[str] = []
    acknowledged: dict[str, list[str]] = collections.defaultdict(list)
    lock = threading.Lock()
    stop = threading.Event()
    signalled = threading.Event()
    started = time.monotonic()

    def worker(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        with httpx.Client(base_url=url, timeout=60) as client:
            n = 0
            while not stop.is_set() and time.monotonic() - started < seconds + 15:
                n += 1
                kind = rng.choice(["recommend", "recommend", "reasoning", "write", "write", "read"])
                user = f"w{index}-u{rng.randrange(8)}"
                item = rng.choice(catalog)
                try:
                    if kind == "recommend":
                        r = client.post("/v1/recommend", json={"history": [{"item_id": item}], "reasoning": False})
                    elif kind == "reasoning":
                        body = {"history": [{"item_id": item}], "max_reasoning_tokens": 8, "use_cache": False}
                        r = client.post("/v1/recommend", json=body)
                    elif kind == "write":
                        r = client.post(f"/v1/users/{user}/events", json={"events": [{"item_id": item}]})
                        if r.status_code == 200:
                            with lock:
                                acknowledged[user].append(item)
                    else:
                        r = client.get(f"/v1/users/{user}/events")
                    key = f"{kind} {r.status_code}"
                    ok = r.status_code < 400 or (kind == "read" and r.status_code == 404)
                    if not ok:
                        err = r.json().get("error", {})
                        if r.status_code == 503 and err.get("type") in ("dependency_unavailable", "draining"):
                            key += f" {err['type']}"
                            # As a well-behaved client does: wait as Retry-After says (the service sends 1 s).
                            time.sleep(min(1.0, float(r.headers.get("retry-after", "1"))))
                        else:
                            with lock:
                                unexpected.append(f"{kind}: {r.status_code} {r.text[:200]}")
                except httpx.TransportError:
                    # Once SIGTERM is sent the server closes its listener after the drain; in a cluster the pod
                    # left the endpoints first (preStop). Before it, a refused connection is a failure.
                    if not signalled.is_set():
                        with lock:
                            unexpected.append(f"{kind}: connection failed before the SIGTERM")
                    key = f"{kind} refused-after-sigterm" if signalled.is_set() else f"{kind} transport-error"
                    time.sleep(0.05)
                with lock:
                    counts[key] += 1

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(workers)]
    for t in threads:
        t.start()
    events: list[str] = []

    def at(fraction: float) -> None:
        time.sleep(max(0.0, started + seconds * fraction - time.monotonic()))

    at(0.25)
    redis.stop()
    events.append(f"{time.monotonic() - started:.1f}s redis stopped")
    at(0.45)
    redis.start()
    events.append(f"{time.monotonic() - started:.1f}s redis started (same port, same AOF)")
    at(0.90)
    signalled.set()
    server.signal(signal.SIGTERM)
    events.append(f"{time.monotonic() - started:.1f}s SIGTERM to the server")
    status = server.wait(60)
    events.append(f"{time.monotonic() - started:.1f}s server exited with status {status}")
    stop.set()
    for t in threads:
        t.join(90)
    import redis as redis_client

    client = redis_client.Redis(port=redis.port)
    lost = {}
    for user, items in acknowledged.items():
        stored = [json.loads(x)["item_id"] for x in client.lrange(f"r2ec:user:{user}:events", 0, -1)]
        missing = len(items) - sum(min(items.count(i), stored.count(i)) for i in set(items))
        if missing > 0 and len(stored) < 200:  # 200 = the per-user cap, which drops the oldest on purpose
            lost[user] = missing
    redis.stop()
    shutil.rmtree(tmp, ignore_errors=True)
    five_xx = sum(n for k, n in counts.items() if k.split()[1].startswith("5") and "503" not in k)
    result = {
        "seconds": seconds,
        "workers": workers,
        "timeline": events,
        "requests_by_status": dict(sorted(counts.items())),
        "total": sum(counts.values()),
        "five_xx_other_than_503": five_xx,
        "unexpected": unexpected[:20],
        "unexpected_count": len(unexpected),
        "acknowledged_events": sum(len(v) for v in acknowledged.values()),
        "lost_acknowledged_events": sum(lost.values()),
        "server_exit_status": status,
        "ok": not unexpected and five_xx == 0 and not lost and status == 0,
    }
    return result


def render(result: dict[str, Any], command: str) -> str:
    lines = [
        DOC_START,
        "## Fault injection",
        "",
        f"`{command}`: {result['seconds']:g} s of mixed load ({result['workers']} clients) on `r2ec serve` with the",
        "shipped Redis flags (AOF, `noeviction`); Redis stopped and restarted, then SIGTERM. Timeline:",
        "",
        *[f"- {e}" for e in result["timeline"]],
        "",
        "| request | count |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in result["requests_by_status"].items()],
        "",
        f"Total {result['total']}; 5xx other than the documented 503s: {result['five_xx_other_than_503']}; "
        f"unexpected failures: {result['unexpected_count']}; acknowledged user events "
        f"{result['acknowledged_events']}, lost {result['lost_acknowledged_events']}; server exit status "
        f"{result['server_exit_status']}. Verdict: {'pass' if result['ok'] else 'FAIL'}.",
        DOC_END,
    ]
    return "\n".join(lines) + "\n"


def write_docs(path: Path, section: str, start: str = DOC_START, end: str = DOC_END) -> None:
    """Replace the section between ``start`` and ``end`` in ``path`` (append it if there is none)."""
    text = path.read_text() if path.exists() else ""
    if start in text and end in text:
        head, rest = text.split(start, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.faults", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--out", type=Path, default=None, help="JSON results (e.g. results/faults.json).")
    parser.add_argument("--docs", type=Path, default=None, help="Markdown file whose fault section is rewritten.")
    args = parser.parse_args(argv)
    if not (args.bundle / "manifest.json").is_file():
        print(f"error: {args.bundle} is not a bundle directory", file=sys.stderr)
        return 2
    result = run_faults(args.bundle, args.seconds, args.workers)
    print(json.dumps(result, indent=2))
    command = "python -m loadtests.faults --bundle BUNDLE --seconds " + f"{args.seconds:g}"
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    if args.docs is not None:
        write_docs(args.docs, render(result, command))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
