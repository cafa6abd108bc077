"""The benchmark harness end to end in seconds: every scenario on the tiny bundle, locust included."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from entrypoints.cli import app
from loadtests.bench_harness import dist
from loadtests.bench_report import render_markdown


def test_smoke_bench_runs_every_scenario(tiny_bundle, dataset_dir, tmp_path):
    out, docs = tmp_path / "bench.json", tmp_path / "bench.md"
    res = CliRunner().invoke(
        app,
        [
            "bench",
            "--bundle",
            str(tiny_bundle),
            "--data",
            str(dataset_dir),
            "--smoke",
            "--out",
            str(out),
            "--docs",
            str(docs),
            "--threads",
            "2",
        ],
    )
    assert res.exit_code == 0, res.output
    result = json.loads(out.read_text())
    assert result["problems"] == []
    assert str(tiny_bundle) not in out.read_text()  # no machine paths in the record
    s = result["scenarios"]
    assert s["capture"]["generation_only"]["n"] == 2 and s["capture"]["ratio_capture_vs_generation"] > 0
    assert s["overhead"]["http"]["n"] == 2 and s["overhead"]["ratio_http_vs_in_process"] > 0
    levels = s["scaling"]["backends"]["transformers"]["levels"]
    for level in ("1", "2"):
        assert levels[level]["requests"] > 0 and levels[level]["failures"] == 0
    assert s["hot"]["cache_hit"]["requests"] > 0 and s["hot"]["cache_hit"]["failures"] == 0
    assert s["hot"]["reasoning_free"]["requests"] > 0
    assert {r["index"] for r in s["catalog"]["rows"]} == {"flat", "ivf", "hnsw"}
    assert result["machine"]["cores"] >= 1
    text = docs.read_text()
    assert "## 1. Hidden-state capture cost" in text and "## 5. Catalog scale" in text


def test_dist_percentiles():
    d = dist([0.001 * i for i in range(1, 101)])
    assert round(d["p50_ms"], 1) == 50.5 and d["n"] == 100


def test_markdown_renders_partial_results():
    text = render_markdown(
        {
            "started": "now",
            "command": "r2ec bench",
            "scenarios": {},
            "machine": {"cpu": "x", "cores": 2, "memory_gib": 1, "gpu": None, "commit": "c", "torch": "t", "vllm": "v"},
        }
    )
    assert "no GPU" in text


def test_an_empty_scenario_is_a_problem_not_a_result():
    from loadtests.bench_report import problems

    ok = {"requests": 4, "rps": 0.5, "p50_ms": 10.0}
    result = {
        "scenarios": {
            "scaling": {"backends": {"transformers": {"levels": {"1": ok, "2": {"requests": 0, "rps": 0.0}}}}},
            "hot": {"cache_hit": ok, "reasoning_free": {}},
        }
    }
    found = problems(result)
    assert "scaling.transformers.2.requests is 0" in found and "scaling.transformers.2.rps is 0.0" in found
    assert "hot.reasoning_free.requests is None" in found
    assert not any("scaling.transformers.1" in p for p in found)


def test_results_are_strict_json_without_machine_paths(tmp_path):
    import json
    from pathlib import Path

    from loadtests.bench_harness import ROOT
    from loadtests.bench_report import finite, public_path, save

    save(tmp_path / "r.json", {"a": float("nan"), "b": [1.0, float("inf")]})
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": None, "b": [1.0, None]}
    assert public_path(ROOT / "results" / "bench.json") == "results/bench.json"
    assert public_path(Path.home() / ".cache" / "r2ec" / "x") == "~/.cache/r2ec/x"
    assert public_path(Path("/opt/somewhere/else/bundle")) == "bundle"
    assert finite({"x": (1.0,)}) == {"x": [1.0]}
