"""Build a bundle's co-interaction table (``r2ec.evidence``) from a dataset's training interactions only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from model_export.baselines import training_sequences
from model_export.baselines.itemknn import cooccurrence_matrix
from model_export.data.format import Dataset
from model_export.data.splits import Protocol
from model_export.data.splits import split as make_split
from r2ec.catalog import Catalog
from r2ec.evidence import CoInteractions


def build_evidence(
    data: Path, catalog: Catalog, protocol: Protocol = "loo", window: int = 20, neighbors: int = 50
) -> tuple[CoInteractions, dict[str, Any]]:
    """Table from the protocol's training sequences (valid/test targets never count), aligned to ``catalog``."""
    ds = Dataset.load(data)
    missing = set(ds.catalog.row_of) - set(catalog.row_of)
    if missing:
        raise ValueError(f"{len(missing)} dataset items are not in the catalog")
    timelines = ds.timelines()
    sequences = training_sequences(timelines, make_split(timelines, protocol, window))
    table = CoInteractions.from_counts(cooccurrence_matrix(catalog, sequences), neighbors)
    return table, {"dataset": ds.name, "protocol": protocol, "users": len(sequences)}
