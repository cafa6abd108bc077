import json

import numpy as np
from typer.testing import CliRunner

from entrypoints.cli import app
from model_export.evaluate import evaluate, select_samples
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


def test_copy_rate_counts_reasoning_lines_that_repeat_the_prompt():
    from model_export.evaluate import copied_lines

    prompt = "Analyze...\\n[Star Wars (1977)] (5.0)\n[Fargo (1996)] (4.0)"
    assert copied_lines("[Fargo (1996)] (4.0)\nI think you like crime films.\n\n", prompt) == (1, 2)
    assert copied_lines("", prompt) == (0, 0)
