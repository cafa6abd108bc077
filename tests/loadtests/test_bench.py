"""The benchmark harness end to end in seconds: every scenario on the tiny bundle, locust included."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from entrypoints.cli import app
from loadtests.bench_harness import CpuTimes, dist, steal_share
from loadtests.bench_report import _steal, render_markdown
from loadtests.bench_vllm import agreement, round_slices
from loadtests.rawhttp import Completed, LoopResult
from r2ec.engine.selection import bf16_verdict


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
    assert list(s) == ["capture", "budget", "overhead", "scaling", "hot", "catalog", "vllm"]  # all, by default
    capture = s["capture"]
    assert capture["generation_only"]["n"] == 2 and capture["ratio_capture_vs_generation"] > 0
    tokens = capture["capture_tokens"]  # transformers here: the capture is a full forward of the sequence
    assert tokens["n"] == 2 and tokens["capture_extra_tokens"] == tokens["capture_sequence_tokens"] > 0
    assert tokens["ratio_tokens_capture_vs_generation"] > 1
    served = capture["served"]  # run as served: every vector came from one of the two sources, and is counted
    assert served["prompts"] == 1 == served["vector_from_generation"] + served["vector_from_capture_pass"]
    assert sum(served["ended_by"].values()) == 1 and served["generation"]["n"] == 1
    budget = s["budget"]["levels"]  # 4 prompts alone, then 2 at a time: each group both ways
    for level, groups in (("1", 4), ("2", 2)):
        row = budget[level]
        assert row["groups"] == groups and row["forced"]["n"] == row["capture_pass"]["n"] == groups
        assert row["ratio_forced_vs_capture_pass_paired"] > 0 and sum(row["ended_by"].values()) == 8
        forced, passed = row["vector_sources"]["on"], row["vector_sources"]["off"]
        assert forced["generation"] + forced["capture"] == 4 and passed == {"generation": 0, "capture": 4}
    assert s["overhead"]["http"]["n"] == 2 and s["overhead"]["ratio_http_vs_in_process"] > 0
    levels = s["scaling"]["backends"]["transformers"]["levels"]
    for level in ("1", "2"):  # a bounded closed loop: exactly the requests asked for
        assert levels[level]["requests"] == 4 and levels[level]["failures"] == 0
        assert levels[level]["stopped_by"] == "requests"
    hot = s["hot"]
    for path in ("cache_hit", "floor"):  # the same number of requests on both, every one a cache-hit reply
        assert hot[path]["requests"] == hot["requests_per_server"] > 0 and hot[path]["failures"] == 0
    assert hot["ratio_p99_vs_floor"] > 0 and hot["reply_bytes"] > 0
    assert hot["reasoning_free"]["requests"] == 4 and hot["reasoning_free"]["failures"] == 0
    catalog = s["catalog"]
    assert {r["index"] for r in catalog["rows"]} == {"flat", "ivf", "hnsw"}
    # 2,000 items: 51 lists, so the sweep ends at nprobe 51 (exhaustive), each effective value once.
    assert [r["nprobe"] for r in catalog["rows"] if r["index"] == "ivf"] == [8, 16, 32, 51]
    assert [r["ef_search"] for r in catalog["rows"] if r["index"] == "hnsw"] == [64, 128, 256, 512, 1024]
    assert set(catalog["smallest_reaching_target"]["2000"]) == {"ivf", "hnsw"}
    vllm = s["vllm"]["dtypes"]
    # By default the dtype `r2ec serve` picks for vLLM here: bfloat16 where it pays, else the bundle's.
    picked = "bfloat16" if bf16_verdict().pays else "float32"
    assert list(vllm) == [picked]
    assert vllm[picked]["served_by"]["backend"] == "vllm" and vllm[picked]["served_by"]["dtype"] == picked
    for level in ("1", "2"):
        row = vllm[picked]["levels"][level]
        for side in ("recommend", "vllm"):
            assert row[side]["requests"] == 4 and row[side]["failures"] == 0
        assert row["rps_ratio"] > 0 and row["p50_ratio"] > 0
        # Two rounds per server, the second in the other order; each round's ratio is kept.
        assert len(row["order"]) == 2 and row["order"][1] == row["order"][0][::-1]
        assert len(row["rps_ratio_per_round"]) == 2 and all(x > 0 for x in row["rps_ratio_per_round"])
        # Each round's CPU steal, per server (a share of the machine's time; Linux reports it, maybe 0).
        assert all(len(row["steal_per_round"][side]) == 2 for side in ("recommend", "vllm"))
        assert all(0.0 <= x <= 1.0 for side in ("recommend", "vllm") for x in row["steal_per_round"][side])
    # Unless told otherwise, vLLM's own worker gets the cores our engine binds (vllm_cpu_reserved auto).
    ours = vllm[picked]["served_by"]["cpu_binding"]["cores"]
    assert vllm[picked]["vllm_worker_cores"] == str(ours)
    counters = vllm[picked]["engine_counters"]  # every generation of ours, all levels and the warm-up (4 + 4 + 1)
    assert counters["prefill"]["generation"]["requests"] >= 9 and counters["answer_forced"] >= 0
    # The same prompt ids, greedy, one request at a time: both servers generate the same tokens.
    assert vllm[picked]["levels"]["1"]["agreement"]["same_tokens"] == 1.0
    assert 1 <= result["machine"]["cores"] <= result["machine"]["cores_online"]
    text = docs.read_text()
    assert "## 1b. Reasoning cut by its budget" in text
    assert "## 1. Hidden-state capture cost" in text and "## 5. Catalog scale" in text
    assert "As served (1 of the prompts" in text and "| a capture pass |" in text
    assert "## 4. Cache-hit path against its floor" in text and "## 6. r2ec serve against vLLM's own server" in text
    assert "CPU steal % (ours / vLLM)" in text


def test_round_slices_cover_every_request_once():
    for n, rounds in ((50, 2), (50, 3), (4, 2), (5, 4), (3, 3)):
        parts = round_slices(n, rounds)
        covered = [i for p in parts for i in range(n)[p]]
        assert covered == list(range(n)) and len(parts) == rounds
        assert max(p.stop - p.start for p in parts) - min(p.stop - p.start for p in parts) <= 1


def test_agreement_counts_answer_in_a_budget_cut_reasoning():
    """Ours cut by the budget wrote 61 tokens and then <answer>'s 3, 64 output tokens as it reports them: the same
    as vLLM's server, and its reasoning is the start of vLLM's text. A natural stop must match the text exactly."""

    def loop(bodies: list[dict[str, object]]) -> LoopResult:
        done = [Completed(i, 1.0, True, 200, json.dumps(b).encode()) for i, b in enumerate(bodies)]
        return LoopResult(clients=1, wall_s=1.0, stopped_by="requests", done=done)

    ours = loop(
        [
            {"reasoning": "Step 1: Star", "reasoning_tokens": 64, "finish_reason": "length"},
            {"reasoning": "Best match: Alien", "reasoning_tokens": 20, "finish_reason": "answer"},
            {"reasoning": "Step 1: Heat", "reasoning_tokens": 64, "finish_reason": "length"},
        ]
    )
    theirs = loop(
        [
            {"usage": {"completion_tokens": 64}, "choices": [{"text": "Step 1: Star Wars"}]},
            {"usage": {"completion_tokens": 20}, "choices": [{"text": "Best match: Alien"}]},
            {"usage": {"completion_tokens": 63}, "choices": [{"text": "Step 1: Fargo"}]},
        ]
    )
    got = agreement(ours, theirs)
    assert got["compared"] == 3
    assert got["same_tokens"] == pytest.approx(2 / 3) and got["same_text"] == pytest.approx(2 / 3)


def test_cpu_steal_share_between_two_readings_of_proc_stat():
    before = CpuTimes.parse("cpu  100 0 50 800 10 0 0 40 0 0\ncpu0 50 0 25 400 5 0 0 20 0 0\n")
    after = CpuTimes.parse("cpu  150 0 70 900 10 0 0 70 0 0\n")
    assert before == CpuTimes(total=1000, steal=40) and after == CpuTimes(total=1200, steal=70)
    assert steal_share(before, after) == pytest.approx(30 / 200)
    assert CpuTimes.parse("cpu  1 2 3 4 5 6 7\n") is None  # a kernel without the steal column
    assert steal_share(None, after) is None and steal_share(after, after) is None
    assert _steal({"recommend": [0.1, None, 0.3], "vllm": [None]}) == "20.0 / -" and _steal(None) == "-"


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
    from loadtests.bench_record import problems

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
    from loadtests.bench_record import finite, public_command, public_path, save

    save(tmp_path / "r.json", {"a": float("nan"), "b": [1.0, float("inf")]})
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": None, "b": [1.0, None]}
    assert public_path(ROOT / "results" / "bench.json") == "results/bench.json"
    assert public_path(Path.home() / ".cache" / "r2ec" / "x") == "~/.cache/r2ec/x"
    assert public_path(Path("/opt/somewhere/else/bundle")) == "bundle"
    assert finite({"x": (1.0,)}) == {"x": [1.0]}
    args = ["--bundle", "/opt/somewhere/bundle", f"--out={ROOT}/results/b.json", "--smoke", "--docs", ""]
    assert public_command(args) == "r2ec bench --bundle bundle --out=results/b.json --smoke --docs ''"


def test_raw_client_reads_sized_chunked_and_closing_replies():
    """The load generator's HTTP/1.1: Content-Length, chunked, and a reply that ends with the connection (the
    client reconnects for the next request); every request is sent once and the loop stops at the count."""
    import asyncio

    from loadtests.rawhttp import closed_loop, run

    replies = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nsized",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nchu\r\n4;x=y\r\nnked\r\n0\r\nT: 1\r\n\r\n",
        b"HTTP/1.1 503 Busy\r\nConnection: close\r\n\r\nbye",
    ]
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1])
            seen.append(await reader.readexactly(length))
            reply = replies[(len(seen) - 1) % 3]
            writer.write(reply)
            await writer.drain()
            if b"close" in reply:
                break
        writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            return await closed_loop(f"http://127.0.0.1:{port}", "/x", [b"a", b"bb"], 1, 6, 30, keep_bodies=True)

    result = run(main())
    assert [c.body for c in result.done] == [b"sized", b"chunked", b"bye"] * 2
    assert [c.status for c in result.done] == [200, 200, 503] * 2 and result.failures == 2
    assert seen == [b"a", b"bb"] * 3 and result.stopped_by == "requests" and not result.errors


def test_catalog_sweeps_cap_at_nlist_and_name_the_smallest_setting():
    from loadtests.bench_catalog import smallest_reaching, sweep_values

    assert sweep_values((8, 16, 32, 64, 128), 51) == [8, 16, 32, 51]
    rows = [
        {"nprobe": 8, "recall_at_10": 0.9, "search": {"p50_ms": 0.1}},
        {"nprobe": 32, "recall_at_10": 0.97, "search": {"p50_ms": 0.3}},
        {"nprobe": 16, "recall_at_10": 0.96, "search": {"p50_ms": 0.2}},
    ]
    assert smallest_reaching(rows, "nprobe", 0.95) == {"nprobe": 16, "recall_at_10": 0.96, "p50_ms": 0.2}
    assert smallest_reaching(rows, "nprobe", 0.99) is None


def test_the_cli_defaults_are_the_configs():
    """``r2ec bench`` with no flags runs BenchConfig's defaults (one place to read what a full run does)."""
    import dataclasses
    import inspect

    from entrypoints.bench import bench
    from loadtests.bench_harness import BenchConfig

    config = {f.name: f.default for f in dataclasses.fields(BenchConfig) if f.default is not dataclasses.MISSING}
    checked = 0
    for name, param in inspect.signature(bench).parameters.items():
        if name not in config or name in ("out", "docs", "threads", "command"):
            continue
        want = config[name]
        got = param.default
        if isinstance(want, tuple):
            got = tuple(type(want[0])(v) for v in got.split(",")) if got else ()
            if name == "scenarios":
                want = tuple(want)
        assert got == want, name
        checked += 1
    assert checked >= 25
