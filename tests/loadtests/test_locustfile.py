"""The README's locust command, verbatim but for a shorter -t and the test server's host and data."""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from loadtests.sse import iter_sse
from tests.service.conftest import make_server

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_locust_command() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^locust -f loadtests/locustfile\.py.*?(?<!\\)$", text, flags=re.M | re.S)
    assert match, "README shows no locust command"
    return match.group(0).replace("\\\n", " ")


def run_locust(argv: list[str], server_url: str, dataset: Path, csv_prefix: Path, swap_paths: dict[str, str]):
    """Run locust with ``argv`` (its own arguments, not the program name) and the given substitutions."""
    swap = {"--host": server_url, "-t": "12s", "--data": str(dataset), "--csv": str(csv_prefix)}
    argv = [swap_paths.get(a, a) for a in argv]
    for i, a in enumerate(argv[:-1]):
        if a in swap:
            argv[i + 1] = swap[a]
    env = {**os.environ, "PYTHONPATH": str(README.parent)}
    return subprocess.run(
        [sys.executable, "-m", "locust", *argv], cwd=README.parent, env=env, capture_output=True, text=True, timeout=120
    )


def check_locust_run(proc: subprocess.CompletedProcess, prefix: Path, streaming: bool = True) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with Path(f"{prefix}_exceptions.csv").open() as f:
        rows = list(csv.reader(f))
    assert rows[1:] == [], rows
    with Path(f"{prefix}_stats.csv").open() as f:
        stats = {(r["Type"], r["Name"]): r for r in csv.DictReader(f)}
    assert sum(int(r["Failure Count"]) for r in stats.values()) == 0, stats
    if streaming:
        assert int(stats[("SSE", "ttft")]["Request Count"]) >= 1, stats.keys()
        assert int(stats[("SSE", "result")]["Request Count"]) >= 1
        report = json.loads(proc.stdout)
        assert any(entry["name"] == "ttft" for entry in report)


@pytest.fixture(scope="module")
def locust_server(tiny_bundle):
    srv = make_server(tiny_bundle, max_reasoning_tokens=64, default_reasoning_tokens=8).start()
    yield srv
    srv.stop()


def test_readme_locust_command_runs_clean(locust_server, dataset_dir, tmp_path):
    cmd = readme_locust_command()
    assert "--w-stream 1" in cmd
    argv = shlex.split(cmd)
    assert argv[0] == "locust"
    proc = run_locust(argv[1:], locust_server.url, dataset_dir, tmp_path / "locust", {})
    check_locust_run(proc, tmp_path / "locust")


def test_compose_loadtest_command_runs_against_the_service(locust_server, dataset_dir, tmp_path):
    """docker/compose.yaml's locust argv, outside a container: the same arguments, with its mounts mapped."""
    spec = yaml.safe_load((README.parent / "docker" / "compose.yaml").read_text())["services"]["locust"]
    argv = list(spec["command"])
    assert "--data" in argv, "the compose load test must say where its histories come from"
    mounts = {v.rsplit(":", 2)[1]: v.rsplit(":", 2)[0] for v in spec["volumes"]}
    assert "/data" in mounts and spec["environment"]["PYTHONPATH"] == "/opt/r2ec"
    paths = {"/opt/r2ec/loadtests/locustfile.py": str(README.parent / "loadtests" / "locustfile.py")}
    proc = run_locust(argv, locust_server.url, dataset_dir, tmp_path / "compose", paths)
    check_locust_run(proc, tmp_path / "compose")


def test_sse_reader_splits_events_across_chunks():
    chunks = ["event: reason", 'ing\ndata: {"delta": "a"}\n', "\nevent: result\ndata: {}\n\n", "data: [DONE]\n\n"]
    got = [(e.event, e.data) for e in iter_sse(chunks)]
    assert got == [("reasoning", '{"delta": "a"}'), ("result", "{}"), ("message", "[DONE]")]
