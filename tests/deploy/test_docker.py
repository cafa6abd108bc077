"""Dockerfiles: hadolint-clean, and the CPU image's start command works exactly as the image runs it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = [ROOT / "docker" / "Dockerfile", ROOT / "docker" / "Dockerfile.cpu"]


def _tool(name: str) -> str:
    path = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(path).exists():
        pytest.fail(f"{name} is not installed (it comes with the dev extras)")
    return path


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_has_no_unexplained_warnings(dockerfile):
    result = subprocess.run([_tool("hadolint"), str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    # Every ignore carries a reason on the line above it.
    lines = dockerfile.read_text().splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore=" in line:
            assert lines[i - 1].startswith("#") and len(lines[i - 1]) > 20, f"unexplained ignore at line {i + 1}"


def runtime_stage(dockerfile: Path, stage: str = "runtime") -> tuple[dict[str, str], list[str], list[str]]:
    """ENV, CMD and HEALTHCHECK command of one stage of a Dockerfile."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    env: dict[str, str] = {}
    cmd: list[str] = []
    health: list[str] = []
    current = None
    for line in text.splitlines():
        line = line.strip()
        m = re.match(r"FROM \S+ AS (\S+)", line)
        if m:
            current = m.group(1)
            continue
        if current != stage:
            continue
        if line.startswith("ENV "):
            for key, value in re.findall(r"(\w+)=(\S+)", line[4:]):
                env[key] = value
        elif line.startswith("CMD "):
            cmd = json.loads(line[4:])
        elif line.startswith("HEALTHCHECK "):
            health = json.loads(line.split(" CMD ", 1)[1])
    return env, cmd, health


def test_cpu_image_cmd_serves_ready(tiny_bundle, tmp_path):
    env_image, cmd, health = runtime_stage(ROOT / "docker" / "Dockerfile.cpu")
    assert cmd == ["r2ec", "serve"] and env_image["R2EC_BUNDLE"] == "/bundle"
    port = free_port()
    # Same command and environment as the image; only what the container gets from outside is mapped here:
    # the /bundle mount, the writable home volume, the venv location (/opt/venv there) and a free port.
    env = {k: v for k, v in os.environ.items() if not k.startswith("R2EC_")}
    env.update(env_image)
    env.update(
        {
            "PATH": str(Path(sys.executable).parent) + os.pathsep + env["PATH"].replace("/opt/venv/bin", ""),
            "R2EC_BUNDLE": str(tiny_bundle),
            "R2EC_HOME": str(tmp_path),
            "HF_HOME": str(tmp_path / "hf"),
            "R2EC_PORT": str(port),
            "R2EC_THREADS": "2",
        }
    )
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code
                if status == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        assert status == 200, (
            (proc.stderr.read() if proc.stderr else "") if proc.poll() is not None else "not ready in time"
        )
        probe = [part.replace(":8000/", f":{port}/") for part in health]
        probe[0] = sys.executable if probe[0] == "python" else probe[0]
        assert subprocess.run(probe, env=env, timeout=10).returncode == 0  # the HEALTHCHECK passes too
    finally:
        proc.terminate()
        proc.wait(60)
