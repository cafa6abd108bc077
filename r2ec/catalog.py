"""Catalog items and interaction events: the project's own data records."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Item:
    """One catalog entry. ``item_id`` is the dataset's own id, always a string."""

    item_id: str
    title: str
    average_rating: float | None = None
    rating_count: int | None = None
    description: str = ""
    year: str = ""
    genres: list[str] = field(default_factory=list)

    def fields(self) -> dict[str, Any]:
        data = asdict(self)
        data["genres"] = ", ".join(self.genres)
        data["average_rating"] = "" if self.average_rating is None else self.average_rating
        data["rating_count"] = "" if self.rating_count is None else self.rating_count
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Item:
        return cls(
            item_id=str(data["item_id"]),
            title=str(data["title"]),
            average_rating=None if data.get("average_rating") is None else float(data["average_rating"]),
            rating_count=None if data.get("rating_count") is None else int(data["rating_count"]),
            description=str(data.get("description") or ""),
            year=str(data.get("year") or ""),
            genres=list(data.get("genres") or []),
        )


@dataclass(frozen=True)
class Event:
    """One interaction: the user consumed ``item_id`` at unix time ``timestamp`` (seconds) with ``rating``."""

    item_id: str
    timestamp: float
    rating: float | None = None


class Catalog:
    """Items in a fixed order; row ``i`` of the bundle's vector matrix is ``items[i]``."""

    def __init__(self, items: Iterable[Item]):
        self.items: list[Item] = list(items)
        self.row_of: dict[str, int] = {}
        for row, item in enumerate(self.items):
            if item.item_id in self.row_of:
                raise ValueError(f"duplicate item id {item.item_id!r} in catalog")
            self.row_of[item.item_id] = row

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Item]:
        return iter(self.items)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self.row_of

    def get(self, item_id: str) -> Item:
        return self.items[self.row_of[item_id]]

    def write_jsonl(self, path: Path) -> None:
        with path.open("w", encoding="utf-8") as f:
            for item in self.items:
                f.write(json.dumps(asdict(item), ensure_ascii=False) + "\n")

    @classmethod
    def read_jsonl(cls, path: Path) -> Catalog:
        with path.open(encoding="utf-8") as f:
            return cls(Item.from_dict(json.loads(line)) for line in f if line.strip())
