"""``r2ec bench`` scenario 5: FAISS at catalog scale. Per size: exact search (flat), an IVF index swept over
``nprobe`` and an HNSW index swept over ``efSearch``, each row with its build time, single-query latency and recall@10
against the exact top 10 (computed once per size). One index lives at a time next to the vectors (1M x 576 float32
is 2.3 GB a copy): each is freed before the next is built."""

from __future__ import annotations

import gc
import time
from typing import Any

import numpy as np

from loadtests.bench_harness import BenchConfig, dist
from r2ec.index import IVF_TRAIN_PER_LIST, IndexSpec, build_index, faiss_gpus, place_index, recall_at

CHUNK = 1 << 16  # rows generated at a time: no n x dim float64 temporaries


def clustered_vectors(n: int, dim: int, rng: np.random.Generator, centers: int = 256) -> np.ndarray:
    """Item-like unit vectors: a mixture of clusters (uniform noise would make approximate search look worse)."""
    c = rng.standard_normal((centers, dim), dtype=np.float32)
    x = np.empty((n, dim), dtype=np.float32)
    for lo in range(0, n, CHUNK):
        hi = min(n, lo + CHUNK)
        block = c[rng.integers(0, centers, hi - lo)]
        block += 0.5 * rng.standard_normal((hi - lo, dim), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        x[lo:hi] = block
    return x


def search_times(index: Any, queries: np.ndarray) -> list[float]:
    times = []
    for q in queries:
        t = time.perf_counter()
        index.search(q[None], 10)
        times.append(time.perf_counter() - t)
    return times


def sweep_values(values: tuple[int, ...], cap: int | None = None) -> list[int]:
    """``values`` in order, capped at ``cap`` (nprobe beyond nlist is nlist), each effective value once."""
    out: list[int] = []
    for v in values:
        v = min(v, cap) if cap is not None else v
        if v not in out:
            out.append(v)
    return out


def smallest_reaching(rows: list[dict[str, Any]], setting: str, target: float) -> dict[str, Any] | None:
    """The row with the smallest ``setting`` whose recall@10 reaches ``target`` (None: no row does)."""
    ok = [r for r in rows if r.get(setting) is not None and r["recall_at_10"] >= target]
    if not ok:
        return None
    best = min(ok, key=lambda r: r[setting])
    return {setting: best[setting], "recall_at_10": best["recall_at_10"], "p50_ms": best["search"]["p50_ms"]}


def sweep(
    cfg: BenchConfig,
    index: Any,
    setting: str,
    values: list[int],
    apply: Any,
    base: dict[str, Any],
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> list[dict[str, Any]]:
    """One row per value of a search-time ``setting`` (``apply(index, value)`` sets it): latency and recall."""
    vectors, queries, truth = data
    rows = []
    for value in values:
        apply(index, value)
        row = {**base, setting: value, "search": dist(search_times(index, queries))}
        row["recall_at_10"] = recall_at(index, vectors, queries, 10, truth)
        rows.append(row)
        cfg.progress(
            f"  catalog: {base['items']} items, {base['index']} {setting} {value}: "
            f"p50 {row['search']['p50_ms']:.3f} ms, recall {row['recall_at_10']:.3f}"
        )
    return rows


def _set_nprobe(index: Any, value: int) -> None:
    index.nprobe = value


def _set_ef_search(index: Any, value: int) -> None:
    index.hnsw.efSearch = value


def scenario_catalog(cfg: BenchConfig) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    rows: list[dict[str, Any]] = []
    best: dict[str, dict[str, Any]] = {}
    for n in cfg.catalog_sizes:
        vectors = clustered_vectors(n, cfg.catalog_dim, rng)
        queries = clustered_vectors(cfg.catalog_queries, cfg.catalog_dim, rng)
        # Exact search: its own row, and (one batch search) the truth every approximate row is measured against.
        t = time.perf_counter()
        index: Any = build_index(vectors, IndexSpec(kind="flat"))
        build_s = time.perf_counter() - t
        times = search_times(index, queries)
        truth = np.asarray(index.search(queries, 10)[1])
        rows.append({"items": n, "index": "flat", "build_s": round(build_s, 2), "search": dist(times)})
        rows[-1]["recall_at_10"] = 1.0
        cfg.progress(f"  catalog: {n} items, flat: p50 {rows[-1]['search']['p50_ms']:.3f} ms")
        if faiss_gpus() > 0:  # the same exact search on GPU 0, side by side with the CPU row
            gpu_index, _ = place_index(index, IndexSpec(kind="flat"), "gpu")
            rows.append({"items": n, "index": "flat-gpu", "search": dist(search_times(gpu_index, queries))})
            rows[-1]["recall_at_10"] = 1.0
            del gpu_index
        del index
        gc.collect()

        spec = IndexSpec(kind="ivf")
        t = time.perf_counter()
        index = build_index(vectors, spec)
        build_s = time.perf_counter() - t
        nlist = int(index.nlist)
        ivf = {"items": n, "index": "ivf", "nlist": nlist, "train_vectors": min(n, IVF_TRAIN_PER_LIST * nlist)}
        ivf["build_s"] = round(build_s, 2)
        data = (vectors, queries, truth)
        ivf_rows = sweep(cfg, index, "nprobe", sweep_values(cfg.ivf_nprobes, nlist), _set_nprobe, ivf, data)
        rows += ivf_rows
        if faiss_gpus() > 0:  # IVF on GPU 0 at the serving default nprobe
            gpu_index, _ = place_index(index, spec, "gpu")
            gpu_row: dict[str, Any] = {
                "items": n,
                "index": "ivf-gpu",
                "nprobe": min(spec.nprobe, nlist),
                "nlist": nlist,
            }
            gpu_row |= {"search": dist(search_times(gpu_index, queries))}
            gpu_row["recall_at_10"] = recall_at(gpu_index, vectors, queries, 10, truth)
            rows.append(gpu_row)
            del gpu_index
        del index
        gc.collect()
        size_best: dict[str, Any] = {"ivf": smallest_reaching(ivf_rows, "nprobe", cfg.recall_target)}

        hnsw = IndexSpec(kind="hnsw")
        if n > cfg.hnsw_max:
            reason = f"build time on this machine (more than --hnsw-max {cfg.hnsw_max:,} items)"
            rows.append({"items": n, "index": "hnsw", "skipped": reason})
            size_best["hnsw"] = {"skipped": reason}
        else:
            t = time.perf_counter()
            index = build_index(vectors, hnsw)
            build_s = time.perf_counter() - t
            base = {"items": n, "index": "hnsw", "m": hnsw.hnsw_m, "ef_construction": hnsw.ef_construction}
            base["build_s"] = round(build_s, 2)
            efs = sweep_values(cfg.hnsw_efs)
            hnsw_rows = sweep(cfg, index, "ef_search", efs, _set_ef_search, base, data)
            rows += hnsw_rows
            size_best["hnsw"] = smallest_reaching(hnsw_rows, "ef_search", cfg.recall_target)
            del index
        best[str(n)] = size_best
        del vectors, queries, truth
        gc.collect()
    return {
        "dim": cfg.catalog_dim,
        "queries": cfg.catalog_queries,
        "batch": 1,
        "recall_target": cfg.recall_target,
        "rows": rows,
        "smallest_reaching_target": best,
    }
