"""``r2ec demo-bundle``: SmolLM2-135M-Instruct (packaged) + the MovieLens-100K catalog -> the embedded default bundle.

Offline and reproducible on a fresh machine in a few minutes on 2 cores.
"""

from __future__ import annotations

import os
from pathlib import Path

from model_export import smollm2
from model_export.data import movielens
from model_export.data.format import Dataset
from model_export.export import ExportConfig, run_export
from r2ec.templates import domain_templates

DEFAULT_HOME = Path(os.environ.get("R2EC_HOME", Path.home() / ".cache" / "r2ec"))
DEFAULT_BUNDLE = DEFAULT_HOME / "bundles" / "demo-smollm2-ml100k"
DEFAULT_DATA = DEFAULT_HOME / "data" / "ml-100k"
DEFAULT_BASE = DEFAULT_HOME / "models" / "smollm2-135m-instruct"


def ensure_movielens(data_dir: Path = DEFAULT_DATA) -> Dataset:
    if (data_dir / "dataset.json").is_file():
        return Dataset.load(data_dir)
    return movielens.build(data_dir, cache=DEFAULT_HOME / "wheels")


def build_demo_bundle(out: Path = DEFAULT_BUNDLE, force: bool = False, data_dir: Path = DEFAULT_DATA) -> Path:
    ensure_movielens(data_dir)
    base = smollm2.convert(DEFAULT_BASE)
    return run_export(
        ExportConfig(
            base_model=base,
            catalog=data_dir,
            templates=domain_templates("movies"),
            domain="movies",
            out=out,
            force=force,
            name="demo-smollm2-ml100k",
        )
    )


def ensure_demo_bundle(out: Path = DEFAULT_BUNDLE) -> Path:
    """The embedded default: build it on first use."""
    if (out / "manifest.json").is_file():
        return out
    return build_demo_bundle(out)
