"""FAISS index over normalised item vectors: inner product == cosine, so the flat index is exact (reference §2)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np

IndexKind = Literal["flat", "ivf", "hnsw"]
# IVF k-means trains on at most this many vectors per list (FAISS asks for 39 or more; beyond 64 the centroids
# barely move while training time grows with n), drawn at random with a fixed seed: a 1M-item catalog trains on
# 256k vectors, not all of them, and the same vectors give the same index.
IVF_TRAIN_PER_LIST = 64
IVF_TRAIN_SEED = 0


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
        index.train(ivf_training_sample(vectors, nlist))
        index.nprobe = min(spec.nprobe, nlist)
    elif spec.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, spec.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = spec.ef_construction
        index.hnsw.efSearch = spec.ef_search
    else:
        raise ValueError(f"unknown index kind {spec.kind!r}")
    index.add(vectors)
    return index


def ivf_training_sample(
    vectors: np.ndarray, nlist: int, per_list: int = IVF_TRAIN_PER_LIST, seed: int = IVF_TRAIN_SEED
) -> np.ndarray:
    """What an IVF index of ``nlist`` lists trains on: every row up to ``per_list * nlist`` rows, else that many
    distinct rows drawn with ``seed`` (kept in their original order)."""
    n = vectors.shape[0]
    cap = per_list * nlist
    if n <= cap:
        return vectors
    rows = np.sort(np.random.default_rng(seed).choice(n, size=cap, replace=False))
    return np.ascontiguousarray(vectors[rows])


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


def exact_neighbours(vectors: np.ndarray, queries: np.ndarray, k: int = 10) -> np.ndarray:
    """Row ids of each query's exact top ``k`` by inner product (what ``recall_at`` compares against)."""
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(np.ascontiguousarray(vectors, dtype=np.float32))
    _, truth = exact.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return np.asarray(truth)


def recall_at(
    approx: faiss.Index, vectors: np.ndarray, queries: np.ndarray, k: int = 10, truth: np.ndarray | None = None
) -> float:
    """Mean recall@k of ``approx`` against exact search over the same vectors (``truth``: that search's result,
    from ``exact_neighbours``, when the caller already has it)."""
    if truth is None:
        truth = exact_neighbours(vectors, queries, k)
    _, got = approx.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    hits = sum(len(set(t.tolist()) & set(g.tolist())) for t, g in zip(truth, got, strict=True))
    return hits / (k * len(queries))


IndexDevice = Literal["auto", "cpu", "gpu"]


class IndexDeviceError(RuntimeError):
    """``index_device=gpu`` was asked for where FAISS has no GPU."""


@dataclass(frozen=True)
class Placement:
    device: Literal["cpu", "gpu"]
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"device": self.device, "reason": self.reason}


def faiss_gpus() -> int:
    """GPUs FAISS can use: 0 with faiss-cpu (no GPU symbols) or without a CUDA device."""
    get = getattr(faiss, "get_num_gpus", None)
    try:
        return int(get()) if get is not None else 0
    except RuntimeError:
        return 0


def check_device(device: IndexDevice) -> None:
    """Refuse ``gpu`` at start-up, before any model is loaded, where no GPU is usable."""
    if device == "gpu" and faiss_gpus() == 0:
        raise IndexDeviceError(
            "index_device=gpu, but FAISS reports no GPU (faiss-cpu is installed, or no CUDA device is visible); "
            "use --index-device auto or cpu, or install faiss-gpu-cu12 on a GPU machine"
        )


def place_index(index: faiss.Index, spec: IndexSpec, device: IndexDevice) -> tuple[faiss.Index, Placement]:
    """Move ``index`` to the GPU when asked (``gpu``) or when one is there (``auto``); say where it ended up.

    Flat and IVF have GPU forms (same results: exact search stays exact). HNSW has none in FAISS: it stays on the
    CPU, where its graph search is already well under a millisecond.
    """
    check_device(device)
    if device == "cpu":
        return index, Placement("cpu", "index_device=cpu")
    if faiss_gpus() == 0:
        return index, Placement("cpu", "auto: FAISS reports no GPU")
    if spec.kind == "hnsw":
        return index, Placement("cpu", f"{device}: HNSW has no GPU form in FAISS; it stays on the CPU")
    resources = faiss.StandardGpuResources()
    gpu_index: Any = faiss.index_cpu_to_gpu(resources, 0, index)
    gpu_index.r2ec_resources = resources  # the resources must live as long as the index
    if spec.kind == "ivf":  # GPU indexes take search parameters through GpuParameterSpace
        cpu_index: Any = index
        faiss.GpuParameterSpace().set_index_parameter(gpu_index, "nprobe", min(spec.nprobe, cpu_index.nlist))
    return gpu_index, Placement("gpu", f"{device}: FAISS GPU 0")
