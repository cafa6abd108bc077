"""Offline evaluation: full-catalog ranking with history excluded, Hit@K / NDCG@K (reference §4).

It drives the same ``Recommender`` and engine interface as the service, so the figures are the service's.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from model_export.data.splits import Sample
from r2ec.engine.base import GenerationOptions
from r2ec.exclusion import Mask
from r2ec.metrics import KS, summarize
from r2ec.recommender import Recommender

TOP_RECORDED = 10  # ranked items kept per sample in the details file


@dataclass
class SampleResult:
    sample: Sample
    rank: int | None
    reasoning: str | None
    tokens: int
    seconds: float
    copied_lines: int = 0  # reasoning lines that repeat a line of the prompt verbatim
    reasoning_lines: int = 0
    finish_reason: str | None = None
    top: tuple[str, ...] = ()  # the ranked item ids (best first), to compare two runs sample by sample


def copied_lines(reasoning: str, prompt: str) -> tuple[int, int]:
    """(reasoning lines that repeat a prompt line verbatim, non-empty reasoning lines)."""
    prompt_lines = {line.strip() for line in prompt.splitlines() if line.strip()}
    lines = [line.strip() for line in reasoning.splitlines() if line.strip()]
    return sum(1 for line in lines if line in prompt_lines), len(lines)


async def rank_of_target(
    recommender: Recommender,
    sample: Sample,
    options: GenerationOptions,
    reasoning: bool,
    k: int,
    mask: Mask = "window",
) -> SampleResult:
    started = time.perf_counter()
    # The prompt's evidence leaves out what the ranking masks, as the service does for a request.
    shown = sample.seen if mask == "seen" else ()
    request_id = f"eval-{uuid.uuid4().hex[:12]}"
    uv = await recommender.user_vector(sample.history, sample.now, options, request_id, reasoning, shown)
    ranked = recommender.rank_rows(uv.vector, sample.history, k, mask=mask, seen=sample.seen)
    target_row = recommender.catalog.row_of[sample.target.item_id]
    hits = [i for i, r in enumerate(ranked.rows.tolist()) if r == target_row]
    copied, lines = copied_lines(uv.reasoning or "", recommender.prompt_for(sample.history, sample.now, shown))
    return SampleResult(
        sample,
        hits[0] if hits else None,
        uv.reasoning,
        uv.generation.num_tokens if uv.generation else 0,
        time.perf_counter() - started,
        copied,
        lines,
        uv.generation.finish_reason if uv.generation else None,
        tuple(recommender.catalog.items[int(r)].item_id for r in ranked.rows[:TOP_RECORDED]),
    )


async def evaluate(
    recommender: Recommender,
    samples: Sequence[Sample],
    options: GenerationOptions,
    reasoning: bool = True,
    concurrency: int = 8,
    progress: bool = True,
    mask: Mask = "window",
) -> tuple[dict[str, Any], list[SampleResult]]:
    k = max(KS)
    semaphore = asyncio.Semaphore(concurrency)
    bar = tqdm(total=len(samples), desc="evaluating", unit="sample", disable=not progress)

    async def one(sample: Sample) -> SampleResult:
        async with semaphore:
            result = await rank_of_target(recommender, sample, options, reasoning, k, mask)
            bar.update(1)
            return result

    started = time.perf_counter()
    results = await asyncio.gather(*(one(s) for s in samples))
    bar.close()
    elapsed = time.perf_counter() - started
    metrics = summarize([r.rank for r in results])
    tokens = sum(r.tokens for r in results)
    reasoning_lines = sum(r.reasoning_lines for r in results)
    summary = {
        "metrics": metrics,
        "reasoning": {
            "lines": reasoning_lines,
            "copy_rate": round(sum(r.copied_lines for r in results) / reasoning_lines, 4) if reasoning_lines else None,
            "finished_at_answer": sum(1 for r in results if r.finish_reason == "answer"),
            "ended_by": dict(sorted(Counter(str(r.finish_reason) for r in results).items())),
        },
        "counts": {
            "samples": len(results),
            "users": len({r.sample.user_id for r in results}),
            "items": len(recommender.catalog),
            "target_in_history": sum(
                1 for r in results if r.sample.target.item_id in {e.item_id for e in r.sample.history}
            ),
        },
        "timing": {
            "seconds": round(elapsed, 2),
            "samples_per_s": round(len(results) / elapsed, 3) if elapsed else None,
            "generated_tokens": tokens,
            "tokens_per_s": round(tokens / elapsed, 1) if elapsed else None,
            "median_sample_s": round(sorted(r.seconds for r in results)[len(results) // 2], 3) if results else None,
        },
    }
    return summary, list(results)


def write_results(path: Path, summary: dict[str, Any], results: Sequence[SampleResult]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    details = path.with_suffix(".samples.jsonl")
    with details.open("w", encoding="utf-8") as f:
        for r in results:
            f.write(
                json.dumps(
                    {
                        "user_id": r.sample.user_id,
                        "target": r.sample.target.item_id,
                        "rank": r.rank,
                        "tokens": r.tokens,
                        "finish_reason": r.finish_reason,
                        "copied_lines": r.copied_lines,
                        "reasoning": r.reasoning,
                        "top": list(r.top),
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )


def compare_details(a: Path, b: Path, k: int = TOP_RECORDED) -> dict[str, Any]:
    """Two evaluations' details files (``*.samples.jsonl``) sample by sample: how much of the top ``k`` they share,
    how often their reasoning is identical, and each one's NDCG@10 over the samples both scored."""

    def load(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
        rows = (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
        return {(r["user_id"], r["target"]): r for r in rows}

    left, right = load(a), load(b)
    both = sorted(set(left) & set(right))
    if not both:
        raise ValueError("the two files share no sample")
    if any(len(left[key].get("top", [])) < k or len(right[key].get("top", [])) < k for key in both):
        raise ValueError(f"a sample has fewer than {k} recorded items (details written before they were recorded?)")
    overlap = [len(set(left[key]["top"][:k]) & set(right[key]["top"][:k])) / k for key in both]
    return {
        "samples": len(both),
        f"top{k}_overlap_mean": round(sum(overlap) / len(overlap), 4),
        f"top{k}_identical": sum(1 for key in both if left[key]["top"][:k] == right[key]["top"][:k]),
        "same_reasoning": sum(1 for key in both if left[key].get("reasoning") == right[key].get("reasoning")),
        "ndcg@10": [summarize([side[key]["rank"] for key in both])["ndcg@10"] for side in (left, right)],
    }
