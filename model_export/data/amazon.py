"""Amazon Reviews 2023 preprocessing as in the paper (reference §4).

Input: a category's 5-core ``rating_only`` CSV (user_id, parent_asin, rating, timestamp in ms) and its item
metadata JSONL (parent_asin, title, average_rating, rating_number, description, price). Steps:

1. clean titles as the authors do (HTML entities unescaped, every non-ASCII character a space, surrounding quotes
   stripped); keep items whose title has at most 20 words and whose price parses as a plain number (``float()``:
   ``"$19.99"`` or ``"1,299.00"`` do not, and those items are dropped, as theirs are);
2. keep interactions from 2022-10-01 up to, not including, 2023-10-01 (UTC); while the window holds fewer than
   ``min_items`` items, extend its start back three months at a time (until it covers all data);
3. write the catalog and interaction log in the project's format. Samples (every position >= 1, window 20) and
   the global temporal 80/10/10 split are derived by ``model_export.data.splits``.
"""

from __future__ import annotations

import csv
import gzip
import html
import json
import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from model_export.data.format import Dataset, Interaction
from r2ec.catalog import Catalog, Item
from r2ec.templates import AMAZON_CATEGORIES

WINDOW_START = (2022, 10)
WINDOW_END = (2023, 10)  # exclusive: the window ends at the first instant of this month, as the authors' does
MAX_TITLE_WORDS = 20
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def _open(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def parse_price(value: Any) -> float | None:
    """The price as the authors read it: whatever ``float()`` accepts, else None (the item is dropped)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        price = float(value)
    except (TypeError, ValueError):
        return None
    return price if math.isfinite(price) else None


def clean_title(raw: str) -> str:
    """HTML entities unescaped, non-ASCII characters replaced by spaces, surrounding quotes stripped.

    ``&quot;Rock &amp; Roll&quot; Hits`` -> ``Rock & Roll" Hits`` (only the leading quote is surrounding).
    """
    text = _NON_ASCII.sub(" ", html.unescape(raw)).strip()
    return text.strip("\"'").strip()


def month_start(year: int, month: int) -> float:
    return datetime(year, month, 1, tzinfo=UTC).timestamp()


def add_months(year: int, month: int, delta: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + delta
    return index // 12, index % 12 + 1


def read_meta(path: Path) -> Iterator[dict[str, Any]]:
    with _open(path) as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def eligible_items(meta_path: Path) -> dict[str, Item]:
    items: dict[str, Item] = {}
    for m in read_meta(meta_path):
        title = clean_title(str(m.get("title") or ""))
        if not title or len(title.split()) > MAX_TITLE_WORDS or parse_price(m.get("price")) is None:
            continue
        description = m.get("description") or []
        if isinstance(description, str):
            description = [description]
        items[str(m["parent_asin"])] = Item(
            item_id=str(m["parent_asin"]),
            title=title,
            average_rating=None if m.get("average_rating") is None else float(m["average_rating"]),
            rating_count=None if m.get("rating_number") is None else int(m["rating_number"]),
            # The authors join the description paragraphs last-to-first; kept for parity with their prompts.
            description=" ".join(reversed([str(d) for d in description])),
        )
    return items


def read_ratings(path: Path) -> list[Interaction]:
    out = []
    with _open(path) as f:
        reader = csv.DictReader(f)
        item_key = "parent_asin" if "parent_asin" in (reader.fieldnames or []) else "item_id"
        for row in reader:
            ts = float(row["timestamp"])
            out.append(
                Interaction(
                    str(row["user_id"]),
                    str(row[item_key]),
                    float(row["rating"]) if row.get("rating") else None,
                    ts / 1000.0 if ts > 1e11 else ts,  # the 2023 release stores milliseconds
                )
            )
    return out


def preprocess(ratings_path: Path, meta_path: Path, category: str, min_items: int = 10_000) -> Dataset:
    if category not in AMAZON_CATEGORIES:
        raise ValueError(f"unknown category {category!r}; one of {sorted(AMAZON_CATEGORIES)}")
    items = eligible_items(meta_path)
    ratings = [x for x in read_ratings(ratings_path) if x.item_id in items]
    if not ratings:
        raise ValueError("no interaction survives the title/price filters")
    earliest = min(x.timestamp for x in ratings)
    end = month_start(*WINDOW_END)
    start_ym = WINDOW_START
    while True:
        start = month_start(*start_ym)
        kept = [x for x in ratings if start <= x.timestamp < end]
        n_items = len({x.item_id for x in kept})
        if n_items >= min_items or start <= earliest:
            break
        start_ym = add_months(*start_ym, -3)
    used = sorted({x.item_id for x in kept})
    return Dataset(
        name=f"amazon-{category}",
        domain=AMAZON_CATEGORIES[category],
        catalog=Catalog(items[i] for i in used),
        interactions=kept,
        info={
            "source": f"Amazon Reviews 2023 {category} ({ratings_path.name}, {meta_path.name})",
            "window": {
                "start": f"{start_ym[0]}-{start_ym[1]:02d}-01",
                "end_exclusive": f"{WINDOW_END[0]}-{WINDOW_END[1]:02d}-01",
            },
            "min_items": min_items,
        },
    )
