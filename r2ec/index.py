"""FAISS index over normalised item vectors: inner product == cosine, so the flat index is exact (reference §2)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np

IndexKind = Literal["flat", "ivf", "hnsw"]


@dataclass(frozen=True)
class IndexSpec:
    kind: IndexKind = "flat"
    nlist: int = 0  # IVF lists; 0 = about 4 * sqrt(n)
    nprobe: int = 16
    hnsw_m: int = 32
    ef_search: int = 128
    ef_construction: int = 200

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexSpec:
        return cls(**data)


def build_index(vectors: np.ndarray, spec: IndexSpec) -> faiss.Index:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    index: faiss.Index
    if spec.kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif spec.kind == "ivf":
        nlist = spec.nlist or max(1, min(n // 39, int(4 * np.sqrt(n))))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.nprobe = min(spec.nprobe, nlist)
    elif spec.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, spec.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = spec.ef_construction
        index.hnsw.efSearch = spec.ef_search
    else:
        raise ValueError(f"unknown index kind {spec.kind!r}")
    index.add(vectors)
    return index


def configure(index: Any, spec: IndexSpec) -> None:
    """Search-time parameters are not all persisted by ``write_index``; set them after loading."""
    if spec.kind == "ivf":
        index.nprobe = min(spec.nprobe, index.nlist)
    elif spec.kind == "hnsw":
        index.hnsw.efSearch = spec.ef_search


def save_index(index: faiss.Index, path: Path) -> None:
    faiss.write_index(index, str(path))


def load_index(path: Path, spec: IndexSpec) -> faiss.Index:
    index = faiss.read_index(str(path))
    configure(index, spec)
    return index


def recall_at(approx: faiss.Index, vectors: np.ndarray, queries: np.ndarray, k: int = 10) -> float:
    """Mean recall@k of ``approx`` against exact search over the same vectors."""
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(np.ascontiguousarray(vectors, dtype=np.float32))
    _, truth = exact.search(queries, k)
    _, got = approx.search(queries, k)
    hits = sum(len(set(t.tolist()) & set(g.tolist())) for t, g in zip(truth, got, strict=True))
    return hits / (k * len(queries))
