"""``r2ec evaluate`` and ``r2ec baseline``: the standard protocol, for the LLM and the classical baselines."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, cast

import typer

from entrypoints.common import (
    DataOption,
    LimitOption,
    MaskOption,
    ProtocolOption,
    SplitOption,
    ThreadsOption,
    app,
    fail,
    mask_for,
    need_bundle,
    need_dataset,
    setup_logging,
    threads_for,
)


async def _open_recommender(  # type: ignore[no-untyped-def]
    bundle_path: Path, backend: str, dtype: str | None, max_batch: int, stops: list[str] | None, conclusion: str | None
):
    from model_export.bundle import load_bundle
    from r2ec.engine.factory import EngineSettings, build_engine

    bundle = load_bundle(bundle_path)
    settings = EngineSettings(backend=backend, dtype=dtype or bundle.generation.dtype, max_batch=max_batch)
    extra = bundle.generation.extra_stops if stops is None else tuple(s for s in stops if s)
    engine = build_engine(bundle.model_dir, bundle.tokenizer, settings, bundle.templates.answer, extra)
    await engine.start()
    return bundle, engine, bundle.recommender(engine, conclusion)


def _given(kind: str, value: list[str] | str | None) -> list[str]:
    """The result file's name part for an option that changes results when given: none when the bundle decides,
    ``no<kind>`` when turned off, else ``<kind>`` and a digest of the texts."""
    if value is None:
        return []
    texts = [value] if isinstance(value, str) else list(value)
    if not any(texts):
        return [f"no{kind}"]
    return [kind + hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:6]]


@app.command("evaluate")
def evaluate(
    bundle: Annotated[Path, typer.Option(help="Bundle directory.")],
    data: DataOption,
    protocol: ProtocolOption = "loo",
    split: SplitOption = "test",
    mask: MaskOption = None,
    no_reasoning: Annotated[bool, typer.Option("--no-reasoning", help="Score prompt + <answer> directly.")] = False,
    limit: LimitOption = None,
    batch_size: Annotated[int, typer.Option(help="Concurrent requests (the engine batches them).")] = 8,
    max_reasoning_tokens: Annotated[
        int | None, typer.Option(help="Reasoning token budget (default: the bundle's).")
    ] = None,
    backend: Annotated[str, typer.Option(help="transformers or vllm.")] = "transformers",
    dtype: Annotated[str | None, typer.Option(help="Model dtype (default: the bundle's).")] = None,
    stop: Annotated[
        list[str] | None,
        typer.Option(
            help="A text that ends reasoning besides <answer>; repeatable (default: the bundle's extra_stops; "
            "--stop '' for none)."
        ),
    ] = None,
    conclusion: Annotated[
        str | None,
        typer.Option(help="The cue reasoning goes on from after an extra stop (default: the bundle's; '' for none)."),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="JSON output (default results/eval-....json).")] = None,
    threads: ThreadsOption = None,
) -> None:
    """Hit@5/10/20 and NDCG@5/10/20 over the full catalog, history excluded, greedy reasoning."""
    need_bundle(bundle)
    need_dataset(data)
    if split not in ("valid", "test"):
        fail(f"unknown split {split!r} (valid or test)")
    if backend not in ("transformers", "vllm"):
        fail(f"unknown backend {backend!r} (transformers or vllm)")
    chosen_mask = mask_for(protocol, mask)
    setup_logging("warning")
    threads_for(threads)
    from model_export.data.format import Dataset
    from model_export.data.splits import select_samples
    from model_export.data.splits import split as make_split
    from model_export.evaluate import evaluate as run_eval
    from model_export.evaluate import write_results
    from r2ec.engine.base import GenerationOptions

    async def main() -> dict[str, Any]:
        b, engine, rec = await _open_recommender(bundle, backend, dtype, batch_size, stop, conclusion)
        try:
            ds = Dataset.load(data)
            missing = {x.item_id for x in ds.interactions} - set(b.catalog.row_of)
            if missing:
                raise typer.BadParameter(f"{len(missing)} dataset items are not in the bundle's catalog")
            samples = make_split(ds.timelines(), protocol, b.templates.window_size)[split]  # type: ignore[arg-type,index]
            chosen = select_samples(samples, limit)
            budget = max_reasoning_tokens or b.generation.max_reasoning_tokens
            served_dtype = dtype or b.generation.dtype
            options = GenerationOptions(max_tokens=budget)
            summary, results = await run_eval(
                rec, chosen, options, reasoning=not no_reasoning, concurrency=batch_size, mask=chosen_mask
            )
            summary["config"] = {
                "bundle": b.name,
                "bundle_version": b.version,
                "data": ds.name,
                "protocol": protocol,
                "split": split,
                "mask": chosen_mask,
                "reasoning": not no_reasoning,
                "limit": limit,
                "split_size": len(samples),
                "max_reasoning_tokens": budget,
                "backend": backend,
                "dtype": served_dtype,
                "extra_stops": list(engine.extra_stops),
                "conclusion": rec.conclusion,
            }
            size = "all" if limit is None else str(limit)
            mode = "noreason" if no_reasoning else f"reason{budget}"
            parts = [b.name, b.version, protocol, split, chosen_mask, mode, f"n{size}", backend, served_dtype]
            parts += _given("stop", stop) + _given("conclusion", conclusion)
            name = "eval-" + "-".join(parts) + ".json"
            target = out or Path("results") / name
            write_results(target, summary, results)
            summary["written"] = str(target)
            return summary
        finally:
            await engine.close()

    summary = asyncio.run(main())
    typer.echo(json.dumps(summary, indent=2))


# model_export.baselines.run.METHODS, spelt out so that a wrong name is refused before torch is imported
BASELINES = ("mostpop", "itemknn", "transitions", "sasrec")


@app.command("baseline")
def baseline(
    method: Annotated[str, typer.Argument(help="mostpop, itemknn, transitions (the evidence table alone) or sasrec.")],
    data: DataOption,
    protocol: ProtocolOption = "loo",
    split: SplitOption = "test",
    mask: MaskOption = None,
    limit: LimitOption = None,
    epochs: Annotated[int, typer.Option(help="SASRec max epochs.")] = 200,
    window: Annotated[int, typer.Option(help="History window (SASRec's sequence length too).")] = 20,
    out: Annotated[
        Path | None, typer.Option(help="JSON output (default: results/baseline-<every option>.json).")
    ] = None,
) -> None:
    """MostPopular, ItemKNN, Transitions or SASRec on the same protocol, exclusion and metrics as r2ec evaluate."""
    need_dataset(data)
    if split not in ("valid", "test"):
        fail(f"unknown split {split!r} (valid or test)")
    if method not in BASELINES:
        fail(f"method must be one of {', '.join(BASELINES)}")
    chosen_mask = mask_for(protocol, mask)
    setup_logging("warning")
    threads_for(None)
    from model_export.baselines.run import result_name, run_baseline
    from model_export.baselines.sasrec import SASRecConfig
    from model_export.data.format import Dataset

    summary = run_baseline(
        method, data, cast(Any, protocol), cast(Any, split), chosen_mask, limit, window, SASRecConfig(epochs=epochs)
    )
    name = Dataset.load(data).name
    target = out or Path("results") / result_name(method, name, protocol, split, chosen_mask, limit, window)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(summary, indent=2) + "\n")
    typer.echo(json.dumps(summary, indent=2))


@app.command("compare")
def compare(
    first: Annotated[Path, typer.Argument(help="An evaluation's details file (results/eval-....samples.jsonl).")],
    second: Annotated[Path, typer.Argument(help="Another one, e.g. the same bundle in another dtype or backend.")],
) -> None:
    """Two evaluations sample by sample: top-10 overlap, identical top 10 and reasoning, NDCG@10 of each."""
    for path in (first, second):
        if not path.is_file():
            fail(f"no such file: {path}")
    from model_export.evaluate import compare_details

    try:
        typer.echo(json.dumps(compare_details(first, second), indent=2))
    except (ValueError, KeyError, json.JSONDecodeError) as e:
        fail(f"cannot compare: {e}")
