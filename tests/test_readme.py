"""Every command the README shows runs, verbatim but for durations and paths, and exits 0.

Commands are read from the README's ``bash`` blocks (a command continues over ``\\`` line ends and open quotes;
``#`` starts a comment), so a command added to the README is run here too. Each one is matched against
``RULES`` in order: a rule says how to run it (a long-running server is started, probed and stopped with SIGTERM)
and which durations and paths to shorten. A command that no rule covers fails the test.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
VENV_BIN = Path(sys.executable).parent


def readme_commands(text: str) -> list[str]:
    out: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        pending = ""
        for line in block.splitlines():
            if not pending and (not line.strip() or line.lstrip().startswith("#")):
                continue
            pending = f"{pending}\n{line}" if pending else line
            if pending.endswith("\\"):
                pending = pending[:-1]
                continue
            try:
                shlex.split(pending, comments=True)
            except ValueError:  # an open quote: the command goes on
                continue
            out.append(pending)
            pending = ""
    return out


@dataclass
class Rule:
    prefix: tuple[str, ...]
    kind: str = "run"  # run | server | covered
    options: dict[str, str] = field(default_factory=dict)  # option -> shorter value
    cwd: str = "work"  # work (a temporary directory) | repo
    timeout: float = 900
    check: Callable[[str], None] | None = None
    covered_by: str = ""


def _recommend_ok(output: str) -> None:
    body = json.loads(output)
    assert "error" not in body and len(body["items"]) == 3, body


def _stream_ok(output: str) -> None:
    assert "event: result" in output and "data: [DONE]" in output, output[-500:]


RULES = [
    Rule(("make", "test"), kind="covered", covered_by="it is the command that runs this test (CI's .ci/run)"),
    Rule(
        ("locust",),
        kind="covered",
        covered_by="tests/loadtests/test_locustfile.py::test_readme_locust_command_runs_clean",
    ),
    # Builds the demo bundle first: 5 min on an AVX512-BF16 machine, 14 min on an AVX2-only one (float32 encode).
    Rule(("make", "serve"), kind="server", cwd="repo", timeout=2400),
    Rule(("r2ec", "serve"), kind="server", options={"--port": "PORT"}),
    Rule(("curl", "-s", "localhost:8000/v1/recommend"), check=_recommend_ok, timeout=300),
    Rule(("curl", "-sN", "localhost:8000/v1/recommend/stream"), check=_stream_ok, timeout=300),
    Rule(("r2ec", "baseline", "sasrec"), options={"--epochs": "2"}),
    Rule(("r2ec", "evaluate"), options={"--limit": "4"}),
    Rule(
        ("r2ec", "train", "--stage", "sft"),
        options={"--max-steps": "1", "--eval-every": "1", "--eval-users": "4", "--data": "TINY"},
    ),
    Rule(
        ("r2ec", "train", "--stage", "recpo"),
        options={"--max-steps": "1", "--eval-every": "1", "--eval-users": "2", "--data": "TINY"},
    ),
    Rule(("r2ec", "export"), options={"--catalog": "TINY", "--evidence-data": "TINY"}),
    Rule(
        ("r2ec", "bench", "--smoke"),
        kind="covered",
        covered_by="tests/loadtests/test_bench.py::test_smoke_bench_runs_every_scenario (the same command with the "
        "tests' tiny bundle and data as paths, and every scenario's record checked; on the demo bundle it took 3 of "
        "this test's 17 minutes)",
    ),
    Rule(("r2ec", "bench", "--scenarios", "catalog"), options={"--catalog-sizes": "1000", "--out": "WORK/c.json"}),
    Rule(
        ("r2ec", "bench"),
        kind="covered",
        covered_by="the --smoke command above: every scenario of the full run, on small sizes and counts",
    ),
    Rule(
        ("python", "-m", "loadtests.faults"),
        kind="covered",
        covered_by="tests/loadtests/test_faults.py::test_readme_fault_command_passes_and_writes_its_record (the same "
        "command with the tests' tiny bundle and files as paths, and its record and docs section checked)",
    ),
    Rule(("r2ec",)),
]


def rule_for(argv: list[str]) -> Rule:
    for rule in RULES:
        if tuple(argv[: len(rule.prefix)]) == rule.prefix:
            return rule
    raise AssertionError(f"no rule says how to run: {shlex.join(argv)}")


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class World:
    """Where the commands run: R2EC_HOME and the work directory are temporary; TINY is the tests' dataset."""

    def __init__(self, tmp: Path, tiny_data: Path):
        self.home = tmp / "home"
        self.work = tmp / "work"
        self.tiny = tiny_data
        self.work.mkdir(parents=True)
        self.home.mkdir(parents=True)
        self.port: int | None = None
        self.server: subprocess.Popen[bytes] | None = None
        self.env = {
            **os.environ,
            "R2EC_HOME": str(self.home),
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(ROOT),
        }

    def argv(self, command: str, rule: Rule) -> list[str]:
        argv = shlex.split(command, comments=True)
        for i, a in enumerate(argv[:-1]):
            if a in rule.options:
                value = rule.options[a]
                value = value.replace("TINY", str(self.tiny)).replace("WORK", str(self.work))
                argv[i + 1] = value.replace("PORT", str(self.port or 0))
        out = []
        for a in argv:
            a = a.replace("~/.cache/r2ec", str(self.home))
            if self.port is not None:
                a = a.replace("localhost:8000", f"127.0.0.1:{self.port}")
            out.append(a)
        if out[0] == "python":
            out[0] = sys.executable
        return out

    @contextlib.contextmanager
    def serving(self, argv: list[str], rule: Rule) -> Iterator[int]:
        port = free_port()
        if "--port" in argv:
            argv[argv.index("--port") + 1] = str(port)
        env = {**self.env, "R2EC_PORT": str(port), "R2EC_THREADS": "2"}
        cwd = ROOT if rule.cwd == "repo" else self.work
        log = (self.work / f"server-{port}.log").open("w")
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + rule.timeout
            while time.monotonic() < deadline:
                assert proc.poll() is None, (self.work / f"server-{port}.log").read_text()[-3000:]
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                        break
                time.sleep(0.5)
            else:
                raise AssertionError("the server did not become ready")
            yield port
        finally:
            # `make serve` execs the server in its recipe: the signal goes to make's child, which is the server
            # itself (no shell in between to orphan it), and make exits with the server's status.
            target = _children(proc.pid)[0] if argv[0] == "make" and _children(proc.pid) else proc.pid
            os.kill(target, signal.SIGTERM)
            status = proc.wait(120)
            log.close()
        assert status == 0, f"{shlex.join(argv)} exited {status} on SIGTERM"

    def run(self, argv: list[str], rule: Rule) -> str:
        cwd = ROOT if rule.cwd == "repo" else self.work
        proc = subprocess.run(argv, cwd=cwd, env=self.env, capture_output=True, text=True, timeout=rule.timeout)
        assert proc.returncode == 0, f"{shlex.join(argv)} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
        if rule.check is not None:
            rule.check(proc.stdout)
        return proc.stdout


def amazon_fixture(work: Path) -> None:
    """The two Amazon files the README's command names, small and in the 2023 release's format."""
    ms = 1_680_000_000_000
    with (work / "Musical_Instruments.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "parent_asin", "rating", "timestamp"])
        for u in range(6):
            for j in range(4):
                w.writerow([f"U{u}", f"A{(u + j) % 8}", 5, ms + (u * 10 + j) * 86_400_000])
    with (work / "meta_Musical_Instruments.jsonl").open("w") as f:
        for i in range(8):
            meta = {"parent_asin": f"A{i}", "title": f"Guitar String Set {i}", "price": "9.99", "rating_number": 3}
            f.write(json.dumps({**meta, "average_rating": 4.5, "description": ["Bright tone."]}) + "\n")


def test_every_readme_command_runs(dataset_dir, tmp_path):
    commands = readme_commands(README.read_text(encoding="utf-8"))
    assert len(commands) >= 15, commands
    world = World(tmp_path, dataset_dir)
    amazon_fixture(world.work)
    # The set-up block's `make serve` comes first; it builds the demo bundle on first use (minutes), which the
    # later `r2ec demo-bundle` then finds in place. curl commands talk to the server `make serve` started.
    ran: list[str] = []
    servers: list[tuple[str, Rule]] = []
    for command in commands:
        argv = shlex.split(command, comments=True)
        rule = rule_for(argv)
        if rule.kind == "covered":
            ran.append(f"covered: {command.splitlines()[0]} ({rule.covered_by})")
            continue
        if rule.kind == "server":
            servers.append((command, rule))
            continue
    make_serve = next(((c, r) for c, r in servers if r.prefix == ("make", "serve")), None)
    assert make_serve is not None, "the README's set-up block must show make serve"
    started = time.monotonic()
    with world.serving(world.argv(*make_serve), make_serve[1]) as port:
        ran.append(f"{time.monotonic() - started:6.1f} s  {make_serve[0].splitlines()[0]} (until ready)")
        world.port = port
        for command in commands:
            rule = rule_for(shlex.split(command, comments=True))
            if rule.kind != "run":
                continue
            started = time.monotonic()
            world.run(world.argv(command, rule), rule)
            ran.append(f"{time.monotonic() - started:6.1f} s  {command.splitlines()[0]}")
    world.port = None
    for command, rule in servers:
        if rule.prefix == ("make", "serve"):
            continue
        started = time.monotonic()
        with world.serving(world.argv(command, rule), rule):
            pass
        ran.append(f"{time.monotonic() - started:6.1f} s  {command.splitlines()[0]}")
    print("\n".join(ran))


def test_the_readme_parser_sees_continuations_and_quotes():
    text = "```bash\nr2ec a --x 1 \\\n    --y 2   # note\ncurl -d '{\n  \"k\": 1}'\n# only a comment\n```\n"
    assert readme_commands(text) == ["r2ec a --x 1 \n    --y 2   # note", "curl -d '{\n  \"k\": 1}'"]
    with pytest.raises(AssertionError):
        rule_for(["rm", "-rf", "/"])
