"""``r2ec bench``: side-by-side latency / throughput benchmark of r2ec-serve (issue: load tests).

Scenarios (each reports p50/p95/p99, requests/s where it applies, failures):
  1 capture   vLLM generation of N tokens alone vs generation + hidden-state capture (same prompts, fixed length),
              and the authors' way (generation, then a second full transformers forward)
  2 overhead  HTTP /v1/recommend vs the same work through the engine API in-process, concurrency 1
  3 scaling   throughput at 1/4/8/16 concurrent clients, reasoning on (locust, closed loop)
  4 hot       cache-hit and reasoning-free paths at 32 concurrent clients (locust)
  5 catalog   FAISS search time vs catalog size, exact vs IVF / HNSW, with recall@10
Medians and ratios are measured side by side in one run (requests interleaved where two paths are compared).
Loopback only; every loop is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import numpy as np

from loadtests.launcher import ServerProcess
from model_export.bundle import Bundle, load_bundle
from model_export.data.format import Dataset
from model_export.data.splits import temporal_split
from r2ec.engine.base import Engine, GenerationOptions
from r2ec.engine.factory import EngineSettings, build_engine
from r2ec.index import IndexKind, IndexSpec, build_index, faiss_gpus, place_index, recall_at
from r2ec.prompts import user_prompt

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class BenchConfig:
    bundle: Path
    data: Path
    out: Path = Path("results/bench.json")
    docs: Path | None = Path("docs/benchmarks.md")
    scenarios: tuple[str, ...] = ("capture", "overhead", "scaling", "hot", "catalog")
    capture_backend: str = "vllm"
    scaling_backend: str = "vllm"
    tokens: int = 64
    prompts: int = 8
    overhead_requests: int = 8
    concurrency: tuple[int, ...] = (1, 4, 8, 16)
    scaling_seconds: int = 60
    hot_users: int = 32
    hot_seconds: int = 30
    catalog_sizes: tuple[int, ...] = (1_000, 10_000, 100_000, 1_000_000)
    hnsw_max: int = 100_000
    catalog_dim: int = 576
    threads: int | None = None
    command: str = ""
    progress: Callable[[str], None] = field(default=lambda msg: print(msg, file=sys.stderr, flush=True))


def dist(samples: Sequence[float]) -> dict[str, float]:
    xs = sorted(samples)
    if not xs:
        return {"n": 0}

    def q(p: float) -> float:
        return float(np.percentile(xs, p))

    return {
        "n": len(xs),
        "p50_ms": q(50) * 1000,
        "p95_ms": q(95) * 1000,
        "p99_ms": q(99) * 1000,
        "mean_ms": statistics.fmean(xs) * 1000,
    }


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    try:
        import vllm

        vllm_version = vllm.__version__
    except ImportError:
        vllm_version = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "gpu": gpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "vllm": vllm_version,
        "commit": commit,
    }


def histories(data: Path, n: int) -> list[Any]:
    samples = temporal_split(Dataset.load(data).timelines())["test"]
    step = max(1, len(samples) // max(n, 1))
    return samples[::step][:n]


# -- scenario 1 ------------------------------------------------------------------------------------------------
async def scenario_capture(cfg: BenchConfig, bundle: Bundle) -> dict[str, Any]:
    import torch

    from r2ec.encoder import forward_pooled, pad_id_of
    from r2ec.models import load_causal_lm

    engine = build_engine(
        bundle.model_dir,
        bundle.tokenizer,
        EngineSettings(
            backend=cfg.capture_backend,  # type: ignore[arg-type]
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
                    await rec.vector_for(message, gen.text, f"c{i}", {})
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
def start_server(
    bundle: Path, backend: str, extra: dict[str, str] | None = None, threads: int | None = None
) -> ServerProcess:
    env = {"R2EC_BACKEND": backend, "R2EC_LOG_LEVEL": "warning", "R2EC_MAX_QUEUE": "512", **(extra or {})}
    if threads:
        env["R2EC_THREADS"] = str(threads)
    return ServerProcess(bundle, env).start(timeout=600)


# -- scenario 2 ------------------------------------------------------------------------------------------------
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
def locust(
    url: str, data: Path, users: int, seconds: int, weights: dict[str, int], tokens: int, out_prefix: Path
) -> dict[str, Any]:
    from loadtests.stats import summary_from_csv

    args = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(ROOT / "loadtests" / "locustfile.py"),
        "--headless",
        "--host",
        url,
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{seconds}s",
        "--stop-timeout",
        "120",
        "--csv",
        str(out_prefix),
        "--only-summary",
        "--data",
        str(data),
        "--reasoning-tokens",
        str(tokens),
        "--loglevel",
        "WARNING",
    ]
    for name in ("reasoning", "no-reasoning", "cache-hit", "stream"):
        args += [f"--w-{name}", str(weights.get(name, 0))]
    subprocess.run(args, check=False, capture_output=True, timeout=seconds + 300)
    return summary_from_csv(out_prefix)


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
def _ms(d: dict[str, Any], key: str = "p50_ms") -> str:
    v = d.get(key)
    return "-" if v is None else f"{v:,.1f}"


def render_markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"Measured {result['started']} on {m['cpu']} ({m['cores']} cores, {m['memory_gib']} GiB"
        f"{', GPU ' + m['gpu'] if m['gpu'] else ', no GPU'}); commit `{m['commit']}`, torch {m['torch']}, "
        f"vLLM {m['vllm']}.",
        "",
        "Command:",
        "",
        "```",
        result["command"],
        "```",
        "",
        "All figures come from one run; compared paths were interleaved request by request. Latencies in ms.",
        "",
    ]
    s = result["scenarios"]
    if "capture" in s:
        c = s["capture"]
        lines += [
            "## 1. Hidden-state capture cost",
            "",
            f"{c['backend']} backend, {c['prompts']} prompts from real histories, exactly {c['tokens']} generated "
            f"tokens (fixed length), batch size 1, capture: `{c['capture_mode']}`.",
            "",
            "| path | p50 | p95 | p99 | ratio to generation (p50) |",
            "|---|---|---|---|---|",
            f"| generation only | {_ms(c['generation_only'])} | {_ms(c['generation_only'], 'p95_ms')} | "
            f"{_ms(c['generation_only'], 'p99_ms')} | 1.00 |",
            f"| generation + capture (`{c['capture_mode']}`) | {_ms(c['generation_plus_capture'])} | "
            f"{_ms(c['generation_plus_capture'], 'p95_ms')} | {_ms(c['generation_plus_capture'], 'p99_ms')} | "
            f"**{c['ratio_capture_vs_generation']:.3f}** |",
            f"| authors' way: generation + full transformers forward | "
            f"{_ms(c['authors_generation_plus_hf_forward'])} | "
            f"{_ms(c['authors_generation_plus_hf_forward'], 'p95_ms')} | "
            f"{_ms(c['authors_generation_plus_hf_forward'], 'p99_ms')} | {c['ratio_authors_vs_generation']:.3f} |",
            "",
        ]
    if "overhead" in s:
        o = s["overhead"]
        lines += [
            "## 2. Service overhead",
            "",
            f"{o['backend']} backend, concurrency 1, reasoning on ({o['tokens']} tokens max, greedy), no cache.",
            "",
            "| path | p50 | p95 | p99 |",
            "|---|---|---|---|",
            f"| engine API in-process | {_ms(o['in_process'])} | {_ms(o['in_process'], 'p95_ms')} | "
            f"{_ms(o['in_process'], 'p99_ms')} |",
            f"| HTTP /v1/recommend | {_ms(o['http'])} | {_ms(o['http'], 'p95_ms')} | {_ms(o['http'], 'p99_ms')} |",
            "",
            f"Ratio HTTP / in-process (p50): **{o['ratio_http_vs_in_process']:.3f}**.",
            "",
        ]
    if "scaling" in s:
        lines += ["## 3. Concurrency scaling", ""]
        for backend, sc in s["scaling"]["backends"].items():
            lines += [
                f"{backend} backend, reasoning on ({sc['tokens']} tokens max), locust closed loop, "
                f"{sc['seconds_per_level']} s per level.",
                "",
                "| clients | requests | failures | req/s | speed-up vs 1 | p50 | p95 | p99 |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for c, row in sc["levels"].items():
                lines.append(
                    f"| {c} | {row.get('requests', 0):.0f} | {row.get('failures', 0):.0f} | {row.get('rps', 0):.3f} | "
                    f"{row.get('speedup_vs_1', 0):.2f}x | {_ms(row)} | {_ms(row, 'p95_ms')} | {_ms(row, 'p99_ms')} |"
                )
            lines.append("")
    if "hot" in s:
        h = s["hot"]
        lines += [
            "## 4. Cache-hit and reasoning-free paths",
            "",
            f"{h['users']} concurrent clients, {h['seconds']} s each, transformers backend, "
            "in-process cache (no Redis).",
            "",
            "| path | requests | failures | req/s | p50 | p95 | p99 |",
            "|---|---|---|---|---|---|---|",
        ]
        for name in ("cache_hit", "reasoning_free"):
            row = h[name]
            lines.append(
                f"| {name.replace('_', '-')} | {row.get('requests', 0):.0f} | {row.get('failures', 0):.0f} | "
                f"{row.get('rps', 0):.2f} | {_ms(row)} | {_ms(row, 'p95_ms')} | {_ms(row, 'p99_ms')} |"
            )
        lines.append("")
    if "catalog" in s:
        cat = s["catalog"]
        lines += [
            "## 5. Catalog scale",
            "",
            f"Synthetic clustered unit vectors, dim {cat['dim']}, {cat['queries']} single queries, top-10.",
            "",
            "| items | index | build s | search p50 | p99 | recall@10 vs exact |",
            "|---|---|---|---|---|---|",
        ]
        for row in cat["rows"]:
            if "skipped" in row:
                lines.append(f"| {row['items']:,} | {row['index']} | - | - | - | skipped: {row['skipped']} |")
            else:
                lines.append(
                    f"| {row['items']:,} | {row['index']} | {row['build_s']} | {row['search']['p50_ms']:.3f} | "
                    f"{row['search']['p99_ms']:.3f} | {row['recall_at_10']:.3f} |"
                )
        lines.append("")
    return "\n".join(lines) + "\n"


def public_path(path: Path) -> str:
    """A path as results may record it: relative to the checkout or to ``~``, else its last component only."""
    resolved = path.expanduser().resolve()
    for base, prefix in ((ROOT, ""), (Path.home().resolve(), "~/")):
        try:
            return prefix + resolved.relative_to(base).as_posix()
        except ValueError:
            continue
    return resolved.name


def finite(obj: Any) -> Any:
    """NaN / infinity -> None, recursively: the record is strict JSON (``allow_nan=False``)."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj


def problems(result: dict[str, Any]) -> list[str]:
    """What makes a run empty: a scenario with no samples, or a rate or latency that is not positive."""
    out: list[str] = []
    s = result.get("scenarios", {})

    def need(value: Any, what: str) -> None:
        if not isinstance(value, int | float) or not np.isfinite(value) or value <= 0:
            out.append(f"{what} is {value!r}")

    if "capture" in s:
        for key in ("generation_only", "generation_plus_capture"):
            need(s["capture"][key].get("n"), f"capture.{key}.n")
            need(s["capture"][key].get("p50_ms"), f"capture.{key}.p50_ms")
    if "overhead" in s:
        for key in ("in_process", "http"):
            need(s["overhead"][key].get("n"), f"overhead.{key}.n")
    if "scaling" in s:
        for backend, table in s["scaling"]["backends"].items():
            for level, row in table["levels"].items():
                need(row.get("requests"), f"scaling.{backend}.{level}.requests")
                need(row.get("rps"), f"scaling.{backend}.{level}.rps")
    if "hot" in s:
        for key in ("cache_hit", "reasoning_free"):
            need(s["hot"][key].get("requests"), f"hot.{key}.requests")
            need(s["hot"][key].get("p50_ms"), f"hot.{key}.p50_ms")
    if "catalog" in s:
        for row in s["catalog"]["rows"]:
            if "skipped" not in row:
                need(row["search"].get("p50_ms"), f"catalog.{row['items']}.{row['index']}.p50_ms")
    return out


def save(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(finite(result), indent=2, allow_nan=False) + "\n")


async def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    bundle = load_bundle(cfg.bundle)
    config = {k: (public_path(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items() if k != "progress"}
    result: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": machine(),
        "command": cfg.command,
        "config": config,
        "scenarios": {},
    }
    work = Path(tempfile.mkdtemp(prefix="r2ec-bench-"))
    steps = {
        "capture": lambda: scenario_capture(cfg, bundle),
        "overhead": lambda: scenario_overhead(cfg, bundle),
    }
    for name in cfg.scenarios:
        cfg.progress(f"[{name}]")
        started = time.perf_counter()
        if name in steps:
            result["scenarios"][name] = await steps[name]()
        elif name == "scaling":
            result["scenarios"][name] = await asyncio.to_thread(scenario_scaling, cfg, work)
        elif name == "hot":
            result["scenarios"][name] = await asyncio.to_thread(scenario_hot, cfg, work)
        elif name == "catalog":
            result["scenarios"][name] = await asyncio.to_thread(scenario_catalog, cfg)
        else:
            raise ValueError(f"unknown scenario {name!r}")
        result["scenarios"][name]["wall_s"] = round(time.perf_counter() - started, 1)
        save(cfg.out, result)  # after every scenario: a crash keeps the rest
    result["problems"] = problems(result)
    save(cfg.out, result)
    if cfg.docs is not None:
        cfg.docs.parent.mkdir(parents=True, exist_ok=True)
        # Sections other tools own (between <!-- name:start --> / <!-- name:end --> markers) survive a re-run.
        old = cfg.docs.read_text() if cfg.docs.exists() else ""
        sections = re.findall(r"<!-- \w+:start -->.*?<!-- \w+:end -->", old, flags=re.S)
        cfg.docs.write_text(render_markdown(result).rstrip("\n") + "\n\n" + "\n\n".join(sections) + "\n")
    return result
