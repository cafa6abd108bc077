"""What every command sets up before it runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import multiprocessing as mp, os
import entrypoints.common  # at module level, as the commands' main module imports it: a spawned child re-runs it

def report(queue):
    queue.put(os.environ.get("OMP_WAIT_POLICY"))

if __name__ == "__main__":
    print(os.environ.get("OMP_WAIT_POLICY"))
    ctx = mp.get_context("spawn")
    for removed in (False, True):
        if removed:  # as the vLLM engine spawns its engine core (vllm_omp_wait_policy auto)
            os.environ.pop("OMP_WAIT_POLICY")
        queue = ctx.Queue()
        child = ctx.Process(target=report, args=(queue,))
        child.start()
        print(queue.get(timeout=60))
        child.join(60)
"""


def test_commands_wait_passively_and_a_spawned_child_keeps_what_it_was_given(tmp_path):
    """A command's own OpenMP threads sleep when idle; a spawned child, which re-imports the command's main module,
    keeps the variable it was spawned with, also where the engine removed it."""
    script = tmp_path / "child_env.py"
    script.write_text(CHILD)
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["PASSIVE", "PASSIVE", "None"]
