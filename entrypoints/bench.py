"""``r2ec bench``: the side-by-side benchmark."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from entrypoints.common import ThreadsOption, app, fail, need_bundle, need_dataset, setup_logging, threads_for
from loadtests import SCENARIOS


def _ints(option: str, value: str) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        fail(f"--{option} takes a comma list of integers, not {value!r}")
    if not out or min(out) < 1:
        fail(f"--{option} takes a comma list of positive integers, not {value!r}")
    return out


@app.command("bench")
def bench(
    bundle: Annotated[Path | None, typer.Option(help="Bundle (default: the demo bundle).")] = None,
    data: Annotated[
        Path | None, typer.Option(help="Dataset for real histories (default: the demo's MovieLens).")
    ] = None,
    scenarios: Annotated[str, typer.Option(help="Comma list of " + ",".join(SCENARIOS) + ".")] = ",".join(SCENARIOS),
    tokens: Annotated[int, typer.Option(help="Reasoning tokens per request (every scenario that generates).")] = 64,
    prompts: Annotated[int, typer.Option(help="Prompts in the capture scenario (each run on every path).")] = 32,
    served_prompts: Annotated[
        int, typer.Option(help="Of those, how many also run as served (to <answer> within the bundle's budget).")
    ] = 16,
    budget_prompts: Annotated[
        int, typer.Option(help="budget: prompts, each run with <answer> forced and with a capture pass.")
    ] = 64,
    budget_concurrency: Annotated[
        int, typer.Option(help="budget: prompts run at a time in its second level (the first runs them alone).")
    ] = 8,
    overhead_requests: Annotated[int, typer.Option(help="Requests per path in the overhead scenario.")] = 8,
    concurrency: Annotated[
        str, typer.Option(help="Client counts (comma list) of the scaling and vllm scenarios.")
    ] = "1,4,8,16",
    scaling_requests: Annotated[
        int, typer.Option(help="Scaling: requests per concurrency level (a closed loop that stops after them).")
    ] = 50,
    scaling_seconds: Annotated[
        int, typer.Option(help="Scaling: time limit per level in seconds (the loop stops earlier if it is reached).")
    ] = 1200,
    scaling_backend: Annotated[
        str,
        typer.Option(
            help="Scaling: backends (comma list of default, vllm, transformers); default is what `r2ec serve` "
            "picks with no --backend, recorded as the server reports it."
        ),
    ] = "default,transformers",
    vllm_requests: Annotated[
        int, typer.Option(help="vllm: requests per concurrency level on each server (r2ec serve, vLLM's own).")
    ] = 50,
    vllm_seconds: Annotated[
        int, typer.Option(help="vllm: time limit of one round of a level on one server, seconds.")
    ] = 1200,
    vllm_rounds: Annotated[
        int,
        typer.Option(help="vllm: each level's requests in this many runs per server, the order alternating."),
    ] = 2,
    vllm_dtypes: Annotated[
        str,
        typer.Option(
            help="vllm: dtypes to run, one after the other (comma list, e.g. float32,bfloat16); "
            "empty = the one `r2ec serve` picks here (bfloat16 where it pays on this CPU, else the bundle's)."
        ),
    ] = "",
    vllm_kv_cache_gib: Annotated[
        int, typer.Option(help="vllm: CPU KV cache of each server in GiB (VLLM_CPU_KVCACHE_SPACE).")
    ] = 1,
    vllm_gpu_memory_utilization: Annotated[
        float,
        typer.Option(help="vllm: GPU memory fraction of each server (both are up at once, one of them idle)."),
    ] = 0.4,
    vllm_reserved_cpus: Annotated[
        int | None,
        typer.Option(
            help="vllm: VLLM_CPU_NUM_OF_RESERVED_CPU for vLLM's own server (CPU cores kept off its worker); "
            "unset = as `r2ec serve` binds its own engine here (--vllm-cpu-reserved), so both get the same cores."
        ),
    ] = None,
    hot_users: Annotated[int, typer.Option(help="Hot: concurrent clients.")] = 32,
    hot_requests: Annotated[
        int, typer.Option(help="Hot: cache-hit requests per server (r2ec serve and the floor), over --hot-rounds.")
    ] = 20000,
    hot_rounds: Annotated[int, typer.Option(help="Hot: alternating runs per server.")] = 4,
    hot_free_requests: Annotated[int, typer.Option(help="Hot: reasoning-free requests.")] = 200,
    hot_seconds: Annotated[int, typer.Option(help="Hot: time limit of one run, seconds.")] = 300,
    catalog_sizes: Annotated[str, typer.Option(help="Catalog: item counts (comma list).")] = "100000,1000000",
    catalog_queries: Annotated[int, typer.Option(help="Catalog: single queries timed per row.")] = 200,
    ivf_nprobes: Annotated[str, typer.Option(help="Catalog: IVF nprobe values (comma list).")] = "8,16,32,64,128,256",
    hnsw_efs: Annotated[str, typer.Option(help="Catalog: HNSW efSearch values (comma list).")] = "64,128,256,512,1024",
    hnsw_max: Annotated[
        int,
        typer.Option(help="Catalog: largest catalog an HNSW index is built for (larger: skipped, reason recorded)."),
    ] = 100000,
    recall_target: Annotated[
        float, typer.Option(help="Catalog: recall@10 the report names each index's smallest setting for.")
    ] = 0.95,
    capture_backend: Annotated[str, typer.Option(help="Capture: backend (vllm or transformers).")] = "vllm",
    out: Annotated[Path, typer.Option(help="JSON results.")] = Path("results/bench.json"),
    docs: Annotated[Path | None, typer.Option(help="Markdown report (empty to skip).")] = Path("docs/benchmarks.md"),
    smoke: Annotated[
        bool,
        typer.Option(
            help="About a minute of every scenario (CI): tiny catalogs, a few requests, 2 levels, transformers where "
            "the backend is free; the vllm scenario still starts both vLLM servers."
        ),
    ] = False,
    threads: ThreadsOption = None,
) -> None:
    """Side-by-side latency/throughput benchmark: capture cost, service overhead, scaling, the cache hit against
    its floor, catalog scale, and r2ec serve against vLLM's own server."""
    import sys

    if bundle is not None:
        need_bundle(bundle)
    if data is not None:
        need_dataset(data)
    unknown = set(scenarios.split(",")) - set(SCENARIOS)
    if unknown:
        fail(f"unknown scenarios {sorted(unknown)}")
    unknown = set(scaling_backend.split(",")) - {"default", "vllm", "transformers"}
    if unknown:
        fail(f"unknown scaling backends {sorted(unknown)}")
    levels = _ints("concurrency", concurrency)
    sizes, nprobes, efs = (
        _ints("catalog-sizes", catalog_sizes),
        _ints("ivf-nprobes", ivf_nprobes),
        _ints("hnsw-efs", hnsw_efs),
    )
    setup_logging("warning")
    threads_for(threads)
    from loadtests.bench import BenchConfig, run_bench
    from loadtests.bench_record import public_command
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
        served_prompts=served_prompts,
        budget_prompts=budget_prompts,
        budget_concurrency=budget_concurrency,
        overhead_requests=overhead_requests,
        concurrency=levels,
        scaling_requests=scaling_requests,
        scaling_seconds=scaling_seconds,
        scaling_backend=scaling_backend,
        vllm_requests=vllm_requests,
        vllm_seconds=vllm_seconds,
        vllm_rounds=vllm_rounds,
        vllm_dtypes=tuple(d for d in vllm_dtypes.split(",") if d.strip()),
        vllm_kv_cache_gib=vllm_kv_cache_gib,
        vllm_gpu_memory_utilization=vllm_gpu_memory_utilization,
        vllm_reserved_cpus=vllm_reserved_cpus,
        hot_users=hot_users,
        hot_requests=hot_requests,
        hot_rounds=hot_rounds,
        hot_free_requests=hot_free_requests,
        hot_seconds=hot_seconds,
        catalog_sizes=sizes,
        catalog_queries=catalog_queries,
        ivf_nprobes=nprobes,
        hnsw_efs=efs,
        hnsw_max=hnsw_max,
        recall_target=recall_target,
        capture_backend=capture_backend,
        threads=threads,
        command=public_command(sys.argv[2:]),  # paths as public_path shows them: no machine paths in results
    )
    if smoke:
        cfg.capture_backend = cfg.scaling_backend = "transformers"
        # 8 tokens: more than <answer>'s ids, which a budget counts (GenerationOptions.own_tokens)
        cfg.tokens, cfg.prompts, cfg.served_prompts, cfg.overhead_requests = 8, 2, 1, 2
        cfg.concurrency, cfg.scaling_requests, cfg.scaling_seconds = (1, 2), 4, 120
        cfg.vllm_requests, cfg.vllm_seconds = 4, 120
        cfg.budget_prompts, cfg.budget_concurrency = 4, 2
        cfg.hot_requests, cfg.hot_rounds, cfg.hot_free_requests, cfg.hot_seconds = 400, 2, 4, 60
        cfg.catalog_sizes, cfg.hnsw_max = (2000,), 2000
    result = asyncio.run(run_bench(cfg))
    typer.echo(json.dumps(result["scenarios"], indent=2))
    if result["problems"]:
        # An empty or non-positive result is a failed benchmark, not a measurement.
        typer.echo("error: the run measured nothing for: " + "; ".join(result["problems"]), err=True)
        raise typer.Exit(1)
