"""The ``r2ec bench`` scenarios, each returning the JSON section it owns (see ``loadtests.bench``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import httpx
import numpy as np

from loadtests.bench_harness import BenchConfig, dist, histories, locust, start_server
from model_export.bundle import Bundle
from r2ec.engine.base import Engine, GenerationOptions, StageTimes
from r2ec.engine.factory import EngineSettings, build_engine
from r2ec.index import IndexKind, IndexSpec, build_index, faiss_gpus, place_index, recall_at
from r2ec.prompts import user_prompt


async def scenario_capture(cfg: BenchConfig, bundle: Bundle) -> dict[str, Any]:
    import torch

    from r2ec.encoder import forward_pooled, pad_id_of
    from r2ec.models import load_causal_lm

    engine = build_engine(
        bundle.model_dir,
        bundle.tokenizer,
        EngineSettings(
            backend=cfg.capture_backend,
            max_model_len=4096,
        ),
        bundle.templates.answer,
    )
    await engine.start()
    rec = bundle.recommender(engine)
    hf = load_causal_lm(bundle.model_dir)
    pad = pad_id_of(bundle.tokenizer)
    options = GenerationOptions(max_tokens=cfg.tokens, fixed_length=True)
    gen_only, gen_capture, authors = [], [], []
    try:
        samples = histories(cfg.data, cfg.prompts)
        await engine.generate(rec.renderer.generation_prompt_ids("warm up"), options, "warm")
        for i, s in enumerate(samples):
            message = user_prompt(s.history, bundle.catalog, s.now, bundle.templates)
            prompt = rec.renderer.generation_prompt_ids(message)
            for order in (0, 1) if i % 2 == 0 else (1, 0):
                if order == 0:
                    t = time.perf_counter()
                    await engine.generate(prompt, options, f"g{i}")
                    gen_only.append(time.perf_counter() - t)
                else:
                    t = time.perf_counter()
                    gen = await engine.generate(prompt, options, f"c{i}")
                    await rec.vector_for(message, gen.text, f"c{i}", StageTimes())
                    gen_capture.append(time.perf_counter() - t)
            # The authors' way: generation, then a second full forward of prompt + reasoning in transformers.
            t = time.perf_counter()
            gen = await engine.generate(prompt, options, f"a{i}")
            with torch.inference_mode():
                forward_pooled(hf, [rec.renderer.user_sequence_ids(message, gen.text)], pad)
            authors.append(time.perf_counter() - t)
            cfg.progress(f"  capture: prompt {i + 1}/{len(samples)}")
    finally:
        await engine.close()
    g, c, a = dist(gen_only), dist(gen_capture), dist(authors)
    return {
        "backend": cfg.capture_backend,
        "tokens": cfg.tokens,
        "prompts": len(gen_only),
        "capture_mode": engine.stats().get("capture", "transformers-encode"),
        "generation_only": g,
        "generation_plus_capture": c,
        "authors_generation_plus_hf_forward": a,
        "ratio_capture_vs_generation": c["p50_ms"] / g["p50_ms"],
        "ratio_authors_vs_generation": a["p50_ms"] / g["p50_ms"],
    }


# -- a server subprocess ---------------------------------------------------------------------------------------


async def scenario_overhead(cfg: BenchConfig, bundle: Bundle) -> dict[str, Any]:
    backend: Literal["transformers", "vllm"] = "transformers"
    srv = start_server(cfg.bundle, backend, threads=cfg.threads)
    url = srv.url
    engine: Engine = build_engine(
        bundle.model_dir, bundle.tokenizer, EngineSettings(backend=backend), bundle.templates.answer
    )
    await engine.start()
    rec = bundle.recommender(engine)
    options = GenerationOptions(max_tokens=cfg.tokens)
    direct, http = [], []
    try:
        samples = histories(cfg.data, cfg.overhead_requests)
        async with httpx.AsyncClient(timeout=600) as client:
            for i, s in enumerate(samples):
                body = {
                    "history": [
                        {"item_id": e.item_id, "rating": e.rating, "timestamp": e.timestamp} for e in s.history
                    ],
                    "k": 10,
                    "max_reasoning_tokens": cfg.tokens,
                    "as_of": s.now,
                    "use_cache": False,
                }
                for order in (0, 1) if i % 2 == 0 else (1, 0):
                    t = time.perf_counter()
                    if order == 0:
                        uv = await rec.user_vector(s.history, s.now, options, f"d{i}")
                        rec.rank_rows(uv.vector, s.history, 10)
                        direct.append(time.perf_counter() - t)
                    else:
                        r = await client.post(url + "/v1/recommend", json=body)
                        r.raise_for_status()
                        http.append(time.perf_counter() - t)
                cfg.progress(f"  overhead: request {i + 1}/{len(samples)}")
    finally:
        await engine.close()
        srv.stop()
    d, h = dist(direct), dist(http)
    return {
        "backend": backend,
        "tokens": cfg.tokens,
        "in_process": d,
        "http": h,
        "ratio_http_vs_in_process": h["p50_ms"] / d["p50_ms"],
    }


# -- scenarios 3 and 4: locust ------------------------------------------------------------------------------------


def scenario_scaling(cfg: BenchConfig, work: Path) -> dict[str, Any]:
    """One table per backend in ``cfg.scaling_backend`` (comma-separated)."""
    return {"backends": {b: scaling_one(cfg, work, b) for b in cfg.scaling_backend.split(",")}}


def scaling_one(cfg: BenchConfig, work: Path, backend: str) -> dict[str, Any]:
    srv = start_server(cfg.bundle, backend, extra={"R2EC_MAX_BATCH": str(max(cfg.concurrency))}, threads=cfg.threads)
    url = srv.url
    rows = {}
    try:
        for c in cfg.concurrency:
            stats = locust(
                url, cfg.data, c, cfg.scaling_seconds, {"reasoning": 1}, cfg.tokens, work / f"scale-{backend}-{c}"
            )
            rows[str(c)] = stats.get("reasoning", {}) | {"aggregate_rps": stats.get("Aggregated", {}).get("rps", 0)}
            cfg.progress(f"  scaling ({backend}): {c} clients -> {rows[str(c)].get('rps', 0):.3f} req/s")
    finally:
        srv.stop()
    base = rows[str(cfg.concurrency[0])].get("rps") or 0.0
    for row in rows.values():
        row["speedup_vs_1"] = (row.get("rps") or 0) / base if base > 0 else None
    return {
        "backend": backend,
        "tokens": cfg.tokens,
        "seconds_per_level": cfg.scaling_seconds,
        "levels": rows,
    }


def scenario_hot(cfg: BenchConfig, work: Path) -> dict[str, Any]:
    srv = start_server(cfg.bundle, "transformers", threads=cfg.threads)
    url = srv.url
    try:
        # Warm the cache for the hot pool first (the locustfile's pool: the first 8 histories, seed 0), so the
        # measured cache-hit requests are all hits.
        from loadtests.stats import load_histories

        for history in load_histories(cfg.data, 20)[:8]:
            body = {"history": history, "k": 10, "max_reasoning_tokens": cfg.tokens}
            httpx.post(url + "/v1/recommend", json=body, timeout=600).raise_for_status()
        hit = locust(url, cfg.data, cfg.hot_users, cfg.hot_seconds, {"cache-hit": 1}, cfg.tokens, work / "hit")
        cfg.progress("  hot: cache-hit done")
        free = locust(url, cfg.data, cfg.hot_users, cfg.hot_seconds, {"no-reasoning": 1}, cfg.tokens, work / "free")
        cfg.progress("  hot: reasoning-free done")
    finally:
        srv.stop()
    return {
        "users": cfg.hot_users,
        "seconds": cfg.hot_seconds,
        "cache_hit": hit.get("cache_hit", {}),
        "reasoning_free": free.get("no_reasoning", {}),
    }


# -- scenario 5 ------------------------------------------------------------------------------------------------


def clustered_vectors(n: int, dim: int, rng: np.random.Generator, centers: int = 256) -> np.ndarray:
    """Item-like vectors: a mixture of clusters (uniform noise would make approximate search look worse)."""
    c = rng.standard_normal((centers, dim)).astype(np.float32)
    x = c[rng.integers(0, centers, n)] + 0.5 * rng.standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def scenario_catalog(cfg: BenchConfig) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    rows: list[dict[str, Any]] = []
    for n in cfg.catalog_sizes:
        vectors = clustered_vectors(n, cfg.catalog_dim, rng)
        queries = clustered_vectors(200, cfg.catalog_dim, rng)
        kinds: tuple[IndexKind, ...] = ("flat", "ivf", "hnsw")
        for kind in kinds:
            if kind == "hnsw" and n > cfg.hnsw_max:
                rows.append({"items": n, "index": kind, "skipped": f"build time on this machine (> {cfg.hnsw_max})"})
                continue
            t = time.perf_counter()
            index = build_index(vectors, IndexSpec(kind=kind))
            build_s = time.perf_counter() - t
            times = []
            for q in queries:
                t = time.perf_counter()
                index.search(q[None], 10)
                times.append(time.perf_counter() - t)
            recall = 1.0 if kind == "flat" else recall_at(index, vectors, queries, 10)
            rows.append(
                {"items": n, "index": kind, "build_s": round(build_s, 2), "search": dist(times), "recall_at_10": recall}
            )
            cfg.progress(
                f"  catalog: {n} items, {kind}: p50 {rows[-1]['search']['p50_ms']:.3f} ms, recall {recall:.3f}"
            )
        if faiss_gpus() > 0:  # the same searches on GPU 0, side by side with the CPU rows
            for kind in ("flat", "ivf"):
                spec = IndexSpec(kind=kind)
                gpu_index, _ = place_index(build_index(vectors, spec), spec, "gpu")
                times = []
                for q in queries:
                    t = time.perf_counter()
                    gpu_index.search(q[None], 10)
                    times.append(time.perf_counter() - t)
                recall = recall_at(gpu_index, vectors, queries, 10) if kind != "flat" else 1.0
                rows.append({"items": n, "index": f"{kind}-gpu", "search": dist(times), "recall_at_10": recall})
        del vectors
    return {"dim": cfg.catalog_dim, "queries": 200, "batch": 1, "rows": rows}


# -- report ------------------------------------------------------------------------------------------------------
