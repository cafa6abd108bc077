"""``r2ec baseline``: fit a classical baseline on a protocol's training data and rank a split with it."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from model_export.baselines.itemknn import ItemKNN
from model_export.baselines.popular import MostPopular
from model_export.baselines.sasrec import SASRec, SASRecConfig
from model_export.baselines.transitions import TransitionsBaseline
from model_export.data.format import Dataset
from model_export.data.splits import Protocol, Split, select_samples
from model_export.data.splits import split as make_split
from model_export.evidence import HORIZON, NEIGHBORS
from r2ec.exclusion import Mask
from r2ec.metrics import summarize

METHODS = ("mostpop", "itemknn", "transitions", "sasrec")


def run_baseline(
    method: str,
    data: Path,
    protocol: Protocol = "loo",
    split: Split = "test",
    mask: Mask = "seen",
    limit: int | None = None,
    window: int = 20,
    sasrec: SASRecConfig | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}")
    ds = Dataset.load(data)
    timelines = ds.timelines()
    splits = make_split(timelines, protocol, window)
    chosen = select_samples(splits[split], limit)
    started = time.perf_counter()
    extra: dict[str, Any] = {}
    if method == "mostpop":
        pop = MostPopular(ds.catalog, window, mask).fit(timelines, splits)
        ranks = [pop.rank(s) for s in chosen]
    elif method == "itemknn":
        knn = ItemKNN(ds.catalog, window, mask).fit(timelines, splits)
        ranks = [knn.rank(s) for s in chosen]
        extra["neighbors"] = knn.neighbors
    elif method == "transitions":
        trans = TransitionsBaseline(ds.catalog, window, mask).fit(timelines, splits)
        ranks = [trans.rank(s) for s in chosen]
        assert trans.table is not None
        extra["evidence"] = {"horizon": HORIZON, "neighbors": NEIGHBORS, "recency": trans.table.recency}
    else:
        cfg = replace(sasrec or SASRecConfig(), max_len=window)
        # Early stopping always watches a fixed subset of the valid split: with no validation samples the
        # best-epoch rule would keep the untrained weights.
        valid = select_samples(splits["valid"], 1000, seed=1)
        model = SASRec(ds.catalog, cfg, window, mask).fit(timelines, splits, valid, progress=progress)
        ranks = model.ranks(chosen)
        extra["epochs_run"] = len(model.history)
        extra["best_valid_ndcg@10"] = max((h["valid_ndcg@10"] for h in model.history), default=None)
        extra["first_epoch_loss"] = model.history[0]["loss"] if model.history else None
    return {
        "method": method,
        "metrics": summarize(ranks),
        "counts": {"samples": len(chosen), "items": len(ds.catalog), "train_samples": len(splits["train"])},
        "config": {
            "dataset": ds.name,
            "protocol": protocol,
            "split": split,
            "mask": mask,
            "limit": limit,
            "window": window,
            **extra,
        },
        "seconds": round(time.perf_counter() - started, 2),
    }


def result_name(method: str, dataset: str, protocol: str, split: str, mask: str, limit: int | None, window: int) -> str:
    """File name derived from every option that changes the result, so two runs never overwrite each other."""
    size = "all" if limit is None else str(limit)
    return f"baseline-{method}-{dataset}-{protocol}-{split}-{mask}-w{window}-n{size}.json"
