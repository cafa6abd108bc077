"""``r2ec bench``: the side-by-side benchmark."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from entrypoints.common import ThreadsOption, app, fail, need_bundle, need_dataset, setup_logging, threads_for


@app.command("bench")
def bench(
    bundle: Annotated[Path | None, typer.Option(help="Bundle (default: the demo bundle).")] = None,
    data: Annotated[
        Path | None, typer.Option(help="Dataset for real histories (default: the demo's MovieLens).")
    ] = None,
    scenarios: Annotated[str, typer.Option(help="Comma list of capture,overhead,scaling,hot,catalog.")] = (
        "capture,overhead,scaling,hot,catalog"
    ),
    tokens: Annotated[int, typer.Option(help="Reasoning tokens per request.")] = 64,
    prompts: Annotated[int, typer.Option(help="Prompts in the capture scenario.")] = 8,
    overhead_requests: Annotated[int, typer.Option(help="Requests per path in the overhead scenario.")] = 8,
    concurrency: Annotated[str, typer.Option(help="Client counts for the scaling scenario.")] = "1,4,8,16",
    scaling_seconds: Annotated[int, typer.Option(help="Seconds per concurrency level.")] = 60,
    hot_seconds: Annotated[int, typer.Option(help="Seconds per hot-path run.")] = 30,
    catalog_sizes: Annotated[
        str, typer.Option(help="Catalog sizes for the FAISS scenario.")
    ] = "1000,10000,100000,1000000",
    capture_backend: Annotated[str, typer.Option(help="Backend of the capture scenario.")] = "vllm",
    scaling_backend: Annotated[str, typer.Option(help="Backends of the scaling scenario (comma list).")] = (
        "vllm,transformers"
    ),
    out: Annotated[Path, typer.Option(help="JSON results.")] = Path("results/bench.json"),
    docs: Annotated[Path | None, typer.Option(help="Markdown report (empty to skip).")] = Path("docs/benchmarks.md"),
    smoke: Annotated[
        bool, typer.Option(help="Seconds-long run of every scenario (CI): tiny sizes, transformers.")
    ] = False,
    threads: ThreadsOption = None,
) -> None:
    """Side-by-side latency/throughput benchmark: capture cost, service overhead, scaling, hot paths, catalog scale."""
    import shlex
    import sys

    if bundle is not None:
        need_bundle(bundle)
    if data is not None:
        need_dataset(data)
    unknown = set(scenarios.split(",")) - {"capture", "overhead", "scaling", "hot", "catalog"}
    if unknown:
        fail(f"unknown scenarios {sorted(unknown)}")
    setup_logging("warning")
    threads_for(threads)
    from loadtests.bench import BenchConfig, run_bench
    from model_export.demo import DEFAULT_DATA, ensure_demo_bundle, ensure_movielens

    if docs is not None and str(docs) in ("", "."):
        docs = None
    if bundle is None:
        bundle = ensure_demo_bundle()
    if data is None:
        ensure_movielens(DEFAULT_DATA)
        data = DEFAULT_DATA
    cfg = BenchConfig(
        bundle=bundle,
        data=data,
        out=out,
        docs=docs,
        scenarios=tuple(scenarios.split(",")),
        tokens=tokens,
        prompts=prompts,
        overhead_requests=overhead_requests,
        concurrency=tuple(int(c) for c in concurrency.split(",")),
        scaling_seconds=scaling_seconds,
        hot_seconds=hot_seconds,
        catalog_sizes=tuple(int(c) for c in catalog_sizes.split(",")),
        capture_backend=capture_backend,
        scaling_backend=scaling_backend,
        threads=threads,
        command="r2ec bench " + " ".join(shlex.quote(a) for a in sys.argv[2:]),
    )
    if smoke:
        cfg.capture_backend = cfg.scaling_backend = "transformers"
        cfg.tokens, cfg.prompts, cfg.overhead_requests = 3, 2, 2
        # Long enough that even the demo bundle (135M model on 2 cores) completes requests at every level.
        cfg.concurrency, cfg.scaling_seconds, cfg.hot_users, cfg.hot_seconds = (1, 2), 10, 4, 10
        cfg.catalog_sizes, cfg.hnsw_max = (2000,), 2000
    result = asyncio.run(run_bench(cfg))
    typer.echo(json.dumps(result["scenarios"], indent=2))
    if result["problems"]:
        # An empty or non-positive result is a failed benchmark, not a measurement.
        typer.echo("error: the run measured nothing for: " + "; ".join(result["problems"]), err=True)
        raise typer.Exit(1)
