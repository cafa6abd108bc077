"""The fault-injection run, short: Redis stopped and restarted and a SIGTERM under load, no 5xx, nothing lost.

It runs the README's command (``python -m loadtests.faults --bundle ... --seconds ... --docs ... --out ...``) on
the tests' tiny bundle, so the README test counts that line as covered instead of running it a second time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from loadtests.faults import render, write_docs

REPO = Path(__file__).resolve().parents[2]


def test_readme_fault_command_passes_and_writes_its_record(tiny_bundle, tmp_path):
    doc, out = tmp_path / "benchmarks.md", tmp_path / "faults.json"
    doc.write_text("# Benchmarks\n\nintro\n")
    argv = ["-m", "loadtests.faults", "--bundle", str(tiny_bundle), "--seconds", "14", "--docs", str(doc)]
    proc = subprocess.run(
        [sys.executable, *argv, "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["five_xx_other_than_503"] == 0, result
    assert result["unexpected_count"] == 0, result["unexpected"]
    assert result["acknowledged_events"] > 0 and result["lost_acknowledged_events"] == 0
    assert result["server_exit_status"] == 0
    assert any("dependency_unavailable" in k for k in result["requests_by_status"]), result  # the outage was felt
    assert result["ok"]
    text = doc.read_text()
    assert text.count("## Fault injection") == 1 and "intro" in text and "Verdict: pass" in text
    write_docs(doc, render(result, "cmd"))  # rewritten in place, not appended twice
    assert doc.read_text().count("## Fault injection") == 1 and "intro" in doc.read_text()
