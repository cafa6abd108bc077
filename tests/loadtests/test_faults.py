"""The fault-injection run, short: Redis stopped and restarted and a SIGTERM under load, no 5xx, nothing lost."""

from __future__ import annotations

from loadtests.faults import render, run_faults, write_docs


def test_fault_injection_run_passes(tiny_bundle, tmp_path):
    result = run_faults(tiny_bundle, seconds=14, workers=4)
    assert result["five_xx_other_than_503"] == 0, result
    assert result["unexpected_count"] == 0, result["unexpected"]
    assert result["acknowledged_events"] > 0 and result["lost_acknowledged_events"] == 0
    assert result["server_exit_status"] == 0
    assert any("dependency_unavailable" in k for k in result["requests_by_status"]), result  # the outage was felt
    assert result["ok"]
    doc = tmp_path / "bench.md"
    doc.write_text("# Benchmarks\n\nintro\n")
    write_docs(doc, render(result, "cmd"))
    write_docs(doc, render(result, "cmd"))  # rewritten in place, not appended twice
    assert doc.read_text().count("## Fault injection") == 1 and "intro" in doc.read_text()
