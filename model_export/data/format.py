"""The project's dataset format (documented in docs/data-format.md).

A dataset directory holds::

    dataset.json       name, domain (prompt wording), source, counts
    catalog.jsonl      one ``r2ec.catalog.Item`` per line; ``item_id`` is the source's own id, as a string
    interactions.csv   user_id,item_id,rating,timestamp  (unix seconds), sorted by user then time
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from r2ec.catalog import Catalog, Event

DATASET_JSON = "dataset.json"
CATALOG = "catalog.jsonl"
INTERACTIONS = "interactions.csv"


@dataclass(frozen=True)
class Interaction:
    user_id: str
    item_id: str
    rating: float | None
    timestamp: float


@dataclass
class Dataset:
    name: str
    domain: str
    catalog: Catalog
    interactions: list[Interaction]
    info: dict[str, Any] = field(default_factory=dict)

    def timelines(self) -> dict[str, list[Event]]:
        """Events per user, oldest first (ties keep file order)."""
        by_user: dict[str, list[tuple[float, int, Event]]] = defaultdict(list)
        for pos, x in enumerate(self.interactions):
            by_user[x.user_id].append((x.timestamp, pos, Event(x.item_id, x.timestamp, x.rating)))
        return {u: [e for _, _, e in sorted(v, key=lambda t: (t[0], t[1]))] for u, v in by_user.items()}

    def save(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.catalog.write_jsonl(out / CATALOG)
        rows = sorted(self.interactions, key=lambda x: (x.user_id, x.timestamp))
        with (out / INTERACTIONS).open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["user_id", "item_id", "rating", "timestamp"])
            for x in rows:
                rating = "" if x.rating is None else f"{x.rating:g}"
                writer.writerow([x.user_id, x.item_id, rating, f"{x.timestamp:.3f}".rstrip("0").rstrip(".")])
        info = {
            "name": self.name,
            "domain": self.domain,
            "counts": {
                "items": len(self.catalog),
                "users": len({x.user_id for x in self.interactions}),
                "interactions": len(self.interactions),
            },
            **self.info,
        }
        (out / DATASET_JSON).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, root: Path) -> Dataset:
        for name in (DATASET_JSON, CATALOG, INTERACTIONS):
            if not (root / name).is_file():
                raise FileNotFoundError(f"{root / name} is missing: not a dataset directory (see docs/data-format.md)")
        info = json.loads((root / DATASET_JSON).read_text(encoding="utf-8"))
        catalog = Catalog.read_jsonl(root / CATALOG)
        interactions = []
        with (root / INTERACTIONS).open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                if row["item_id"] not in catalog:
                    raise ValueError(f"{root / INTERACTIONS}: item {row['item_id']!r} is not in the catalog")
                interactions.append(
                    Interaction(
                        row["user_id"],
                        row["item_id"],
                        float(row["rating"]) if row["rating"] else None,
                        float(row["timestamp"]),
                    )
                )
        extra = {k: v for k, v in info.items() if k not in ("name", "domain", "counts")}
        return cls(info["name"], info["domain"], catalog, interactions, extra)
