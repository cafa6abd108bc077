"""``r2ec data``: build datasets in the project's format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from entrypoints.common import data_app, fail, need_file, setup_logging


@data_app.command("movielens")
def data_movielens(
    out: Annotated[Path, typer.Option(help="Output dataset directory.")],
    wheel: Annotated[Path | None, typer.Option(help="RecBole 1.2.1 wheel (else pip downloads it).")] = None,
) -> None:
    """MovieLens-100K from the RecBole 1.2.1 wheel: catalog (id, title, year, genres, rating stats) + interactions."""
    setup_logging()
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

    need_file(ratings, "ratings file")
    need_file(meta, "metadata file")
    if category not in AMAZON_CATEGORIES:
        fail(f"unknown category {category!r}; one of {', '.join(sorted(AMAZON_CATEGORIES))}")
    setup_logging()
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
