"""A SIGTERM ends a long command as Ctrl-C does: its engine's worker processes go with it, none is orphaned."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil


def test_sigterm_during_an_evaluation_leaves_no_engine_process(tiny_bundle: Path, dataset_dir: Path, tmp_path):
    args = ["evaluate", "--bundle", str(tiny_bundle), "--data", str(dataset_dir), "--backend", "vllm"]
    args += ["--max-reasoning-tokens", "512", "--batch-size", "1", "--out", str(tmp_path / "eval.json")]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "entrypoints.cli", *args], stderr=subprocess.PIPE, text=True, env=env
    )
    lines: list[str] = []
    started = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in iter(proc.stderr.readline, ""):
            lines.append(line)
            if "evaluating" in line:
                started.set()

    threading.Thread(target=read, daemon=True).start()
    engine: list[psutil.Process] = []
    try:
        assert started.wait(300), "".join(lines[-30:])
        time.sleep(2)  # the engine is generating
        engine = psutil.Process(proc.pid).children(recursive=True)
        assert engine, "vLLM runs its engine core in a child process"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        _, alive = psutil.wait_procs(engine, timeout=30)
        assert not alive, f"left running after SIGTERM: {[p.name() for p in alive]}"
        assert not (tmp_path / "eval.json").exists()  # stopped, not finished
    finally:
        for p in [psutil.Process(proc.pid), *engine] if proc.poll() is None else engine:
            if p.is_running():
                p.kill()
