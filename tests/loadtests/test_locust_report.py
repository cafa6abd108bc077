"""The locust section of docs/benchmarks.md: rewritten between its markers from locust's CSV, saying what served."""

from __future__ import annotations

from pathlib import Path

from loadtests.locust_report import END, START, main

HEADER = "Type,Name,Request Count,Failure Count,Requests/s,50%,95%,99%\n"


def test_the_section_is_rewritten_in_place_with_the_server_it_ran_against(tmp_path: Path):
    (tmp_path / "run_stats.csv").write_text(
        HEADER + "POST,reasoning,30,1,0.5,2900,3600,3700\n,Aggregated,30,1,0.5,2900,3600,3700\n"
    )
    docs = tmp_path / "benchmarks.md"
    docs.write_text(f"# Benchmarks\n\n{START}\nold\n{END}\n\n## after\n")
    args = ["--csv", str(tmp_path / "run"), "--docs", str(docs), "--command", "locust -u 8"]
    assert main([*args, "--machine", "a 2-core test box", "--server", "`r2ec serve` (vLLM, bfloat16)"]) == 0
    text = docs.read_text()
    assert "old" not in text and text.startswith("# Benchmarks") and text.endswith("## after\n")
    assert "`locust -u 8` against `r2ec serve` (vLLM, bfloat16) on a 2-core test box." in text
    assert "| reasoning | 30 | 1 | 0.50 | 2900 | 3600 | 3700 |" in text
    assert "Aggregated: 30 requests, 1 failures, 0.50 req/s." in text
