import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from entrypoints.cli import app
from model_export.data.splits import select_samples
from model_export.evaluate import evaluate
from r2ec.engine.base import GenerationOptions
from r2ec.metrics import summarize
from tests.helpers import split_samples, transformers_recommender


async def test_evaluator_ranks_by_full_catalog_cosine_with_history_excluded(tiny_bundle, dataset_dir):
    async with transformers_recommender(tiny_bundle) as (b, rec):
        samples = split_samples(dataset_dir, 5)
        summary, results = await evaluate(
            rec, samples, GenerationOptions(max_tokens=4), reasoning=False, progress=False
        )
        # Independent computation: brute-force cosine over the catalog, history masked.
        ranks = []
        for r in results:
            uv = await rec.user_vector(r.sample.history, r.sample.now, GenerationOptions(), "x", reasoning=False)
            cos = b.vectors @ uv.vector
            for e in r.sample.history:
                cos[b.catalog.row_of[e.item_id]] = -np.inf
            order = np.argsort(-cos, kind="stable").tolist()
            rank = order.index(b.catalog.row_of[r.sample.target.item_id])
            ranks.append(rank if rank < 20 else None)
        assert [r.rank for r in results] == ranks
        assert summary["metrics"] == summarize(ranks)


def test_select_samples_is_fixed_and_ordered():
    xs = list(range(100))
    a = select_samples(xs, 10)
    assert a == select_samples(xs, 10) and a == sorted(a) and len(a) == 10


def test_cli_evaluate_with_and_without_reasoning(tiny_bundle, dataset_dir, tmp_path):
    runner = CliRunner()
    for flag in ([], ["--no-reasoning"]):
        out = tmp_path / f"e{len(flag)}.json"
        res = runner.invoke(
            app,
            [
                "evaluate",
                "--bundle",
                str(tiny_bundle),
                "--data",
                str(dataset_dir),
                "--limit",
                "4",
                "--max-reasoning-tokens",
                "4",
                "--out",
                str(out),
                *flag,
            ],
        )
        assert res.exit_code == 0, res.output
        data = json.loads(out.read_text())
        assert data["counts"]["samples"] == 4 and set(data["metrics"]) >= {"hit@10", "ndcg@10"}
        assert data["config"]["reasoning"] is (not flag)
        assert len(out.with_suffix(".samples.jsonl").read_text().splitlines()) == 4


def test_cli_evaluate_stop_and_conclusion_overrides(tiny_bundle, dataset_dir, tmp_path):
    """--stop / --conclusion replace the bundle's serving defaults, are recorded, and every sample says how its
    reasoning ended ("e" is a letter the random model writes: each one stops there, then concludes)."""
    out = tmp_path / "stop.json"
    args = ["evaluate", "--bundle", str(tiny_bundle), "--data", str(dataset_dir), "--limit", "4"]
    extra = ["--max-reasoning-tokens", "12", "--stop", "e", "--conclusion", " Best:", "--out", str(out)]
    res = CliRunner().invoke(app, [*args, *extra])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["config"]["extra_stops"] == ["e"] and data["config"]["conclusion"] == " Best:"
    assert sum(data["reasoning"]["ended_by"].values()) == 4
    rows = [json.loads(line) for line in out.with_suffix(".samples.jsonl").read_text().splitlines()]
    assert any(" Best:" in row["reasoning"] for row in rows)
    for row in rows:
        if row["finish_reason"] in ("concluded", "length") and " Best:" in row["reasoning"]:
            assert "e" not in row["reasoning"].split(" Best:")[0]


def test_copy_rate_counts_reasoning_lines_that_repeat_the_prompt():
    from model_export.evaluate import copied_lines

    prompt = "Analyze...\\n[Star Wars (1977)] (5.0)\n[Fargo (1996)] (4.0)"
    assert copied_lines("[Fargo (1996)] (4.0)\nI think you like crime films.\n\n", prompt) == (1, 2)
    assert copied_lines("", prompt) == (0, 0)


def test_compare_details_measures_top10_agreement(tmp_path):
    from model_export.evaluate import compare_details

    def write(name, rows):
        path = tmp_path / name
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path

    top = [str(i) for i in range(10)]
    a = write("a.jsonl", [
        {"user_id": "1", "target": "3", "rank": 3, "reasoning": "r1", "top": top},
        {"user_id": "2", "target": "x", "rank": None, "reasoning": "r2", "top": top},
        {"user_id": "9", "target": "0", "rank": 0, "reasoning": "only in a", "top": top},
    ])  # fmt: skip
    half = top[:5] + [str(i) for i in range(50, 55)]
    b = write("b.jsonl", [
        {"user_id": "1", "target": "3", "rank": 3, "reasoning": "r1", "top": top},
        {"user_id": "2", "target": "x", "rank": 0, "reasoning": "other", "top": half},
    ])  # fmt: skip
    out = compare_details(a, b)
    assert out["samples"] == 2 and out["top10_identical"] == 1 and out["same_reasoning"] == 1
    assert out["top10_overlap_mean"] == 0.75
    assert out["ndcg@10"][0] == 0.5 * (1 / math.log2(5)) and out["ndcg@10"][1] > out["ndcg@10"][0]
    short = write("c.jsonl", [{"user_id": "1", "target": "3", "rank": 3, "reasoning": "r1", "top": top[:3]}])
    with pytest.raises(ValueError, match="fewer than 10"):
        compare_details(a, short)
