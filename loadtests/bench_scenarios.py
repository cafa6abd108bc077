"""The ``r2ec bench`` scenarios, each returning the JSON section it owns (see ``loadtests.bench``)."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any, Literal

import httpx

from loadtests.bench_harness import (
    BenchConfig,
    dist,
    histories,
    history_body,
    level_bodies,
    load,
    loop_summary,
    merge_loops,
    request_body,
    service_message,
    start_server,
)
from loadtests.launcher import FloorServer
from loadtests.rawhttp import LoopResult
from model_export.bundle import Bundle
from r2ec.engine.base import Engine, GenerationOptions, StageTimes
from r2ec.engine.factory import EngineSettings, build_engine
from r2ec.engine.selection import candidates


def _prefill(engine: Engine) -> dict[str, dict[str, int]] | None:
    """vLLM's prefix-cache counts per phase (``VLLMEngine.stats``); None for an engine without a prefix cache."""
    prefill = engine.stats().get("prefill")
    return prefill if isinstance(prefill, dict) else None


def _moved(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]], phase: str) -> dict[str, int]:
    return {k: after[phase][k] - before[phase][k] for k in after[phase]}


def capture_tokens(rows: list[dict[str, int]], source: str) -> dict[str, Any]:
    """Per request of the generation + capture path: prompt, cached prompt and generated tokens of the generation,
    sequence and cached tokens of the capture. The capture's extra work is its uncached tokens; the ratio
    (generation + capture) / generation counts the generation's prompt in full (its cache hits depend on what
    ran before it) plus the generated tokens."""
    n = len(rows)
    total = {k: sum(r[k] for r in rows) for k in rows[0]} if rows else {}

    def mean(key: str) -> float | None:
        return total[key] / n if n else None

    generation = total.get("prompt", 0) + total.get("generated", 0)
    extra = total.get("sequence", 0) - total.get("sequence_cached", 0)
    return {
        "source": source,
        "n": n,
        "generation_prompt_tokens": mean("prompt"),
        "generation_cached_tokens": mean("prompt_cached"),
        "generated_tokens": mean("generated"),
        "capture_sequence_tokens": mean("sequence"),
        "capture_cached_tokens": mean("sequence_cached"),
        "capture_extra_tokens": extra / n if n else None,
        "ratio_tokens_capture_vs_generation": (generation + extra) / generation if generation else None,
    }


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
    gen_only, gen_capture, capture_only, authors = [], [], [], []
    tokens: list[dict[str, int]] = []
    try:
        samples = histories(cfg.data, cfg.prompts)
        await engine.generate(rec.renderer.generation_prompt_ids("warm up"), options, "warm")
        for i, s in enumerate(samples):
            message = service_message(rec, s)
            prompt = rec.renderer.generation_prompt_ids(message)
            # The prompt's KV blocks first, untimed: otherwise whichever path runs first pays the prompt's prefill
            # and the other finds it cached, and the per-prompt ratio swings with the order.
            await engine.generate(prompt, GenerationOptions(max_tokens=1, fixed_length=True), f"w{i}")
            for order in (0, 1) if i % 2 == 0 else (1, 0):
                if order == 0:
                    t = time.perf_counter()
                    await engine.generate(prompt, options, f"g{i}")
                    gen_only.append(time.perf_counter() - t)
                else:
                    before = _prefill(engine)
                    t = time.perf_counter()
                    gen = await engine.generate(prompt, options, f"c{i}")
                    t_capture = time.perf_counter()
                    await rec.vector_for(message, gen.text, f"c{i}", StageTimes())
                    gen_capture.append(time.perf_counter() - t)
                    capture_only.append(time.perf_counter() - t_capture)
                    after = _prefill(engine)
                    sequence = rec.renderer.user_sequence_ids(message, gen.text)
                    row = {"prompt": len(prompt), "prompt_cached": 0, "generated": gen.num_tokens}
                    row |= {"sequence": len(sequence), "sequence_cached": 0}
                    if before is not None and after is not None:
                        moved = {phase: _moved(before, after, phase) for phase in ("generation", "capture")}
                        row |= {"prompt": moved["generation"]["prompt_tokens"]}
                        row |= {"prompt_cached": moved["generation"]["cached_tokens"]}
                        row |= {"sequence": moved["capture"]["prompt_tokens"]}
                        row |= {"sequence_cached": moved["capture"]["cached_tokens"]}
                    tokens.append(row)
            # The authors' way: generation, then a second full forward of prompt + reasoning in transformers.
            t = time.perf_counter()
            gen = await engine.generate(prompt, options, f"a{i}")
            with torch.inference_mode():
                forward_pooled(hf, [rec.renderer.user_sequence_ids(message, gen.text)], pad)
            authors.append(time.perf_counter() - t)
            cfg.progress(f"  capture: prompt {i + 1}/{len(samples)}")
        counted = _prefill(engine) is not None
        served = await _served_capture(cfg, bundle, rec, samples[: cfg.served_prompts])
    finally:
        await engine.close()
    g, c, a = dist(gen_only), dist(gen_capture), dist(authors)
    # Each prompt ran both ways, so its own ratio removes the spread between prompts (lengths differ by 2x) that
    # a ratio of two p50s keeps; and the capture's own time is measured inside the request that paid it.
    paired = [x / y for x, y in zip(gen_capture, gen_only, strict=True)]
    direct = [x / (x_all - x) for x, x_all in zip(capture_only, gen_capture, strict=True)]
    source = (
        "vLLM prefix-cache counters (RequestOutput.num_cached_tokens)"
        if counted
        else "sequence lengths (this backend's capture is a full forward, no prefix cache)"
    )
    return {
        "backend": cfg.capture_backend,
        "tokens": cfg.tokens,
        "prompts": len(gen_only),
        "capture_mode": engine.stats().get("capture", "transformers-encode"),
        "generation_only": g,
        "generation_plus_capture": c,
        "authors_generation_plus_hf_forward": a,
        "capture_only": dist(capture_only),
        "ratio_capture_vs_generation": c["p50_ms"] / g["p50_ms"],
        "ratio_capture_vs_generation_paired": statistics.median(paired),
        "ratio_capture_vs_generation_direct": 1.0 + statistics.median(direct),
        "ratio_authors_vs_generation": a["p50_ms"] / g["p50_ms"],
        "capture_tokens": capture_tokens(tokens, source),
        "served": served,
    }


async def _served_capture(cfg: BenchConfig, bundle: Bundle, rec: Any, samples: list[Any]) -> dict[str, Any]:
    """The capture as served: reasoning to ``<answer>`` within the bundle's budget (its extra stops and conclusion
    included), then the user vector, which is the generation's own last step where the engine kept it and a
    capture pass where not (the budget ran out first, or the ids do not re-tokenise to themselves)."""
    from r2ec.engine.base import final

    options = GenerationOptions(max_tokens=bundle.generation.max_reasoning_tokens)
    own: list[float] = []
    passes: list[float] = []
    generation: list[float] = []
    ended: list[str] = []
    for i, s in enumerate(samples):
        before = rec.reused_states
        uv = await final(rec.stream_user_vector(service_message(rec, s), options, f"s{i}"), "no user vector")
        (own if rec.reused_states > before else passes).append(uv.timings.capture_s or 0.0)
        generation.append(uv.timings.generation_s or 0.0)
        ended.append(uv.generation.finish_reason if uv.generation is not None else "none")
        cfg.progress(f"  capture (served): prompt {i + 1}/{len(samples)}")
    return {
        "prompts": len(samples),
        "max_tokens": options.max_tokens,
        "ended_by": {reason: ended.count(reason) for reason in sorted(set(ended))},
        "vector_from_generation": len(own),
        "vector_from_capture_pass": len(passes),
        "generation": dist(generation),
        "capture_from_generation": dist(own),
        "capture_pass": dist(passes),
    }


# -- scenario 2 -------------------------------------------------------------------------------------------------


async def scenario_overhead(cfg: BenchConfig, bundle: Bundle) -> dict[str, Any]:
    backend: Literal["transformers", "vllm"] = "transformers"
    srv = start_server(cfg.bundle, backend, threads=cfg.threads)
    url = srv.url
    # The dtype the server picks for itself (`auto`), so that both sides run the same arithmetic.
    dtype = candidates(backend, None, bundle.generation.dtype)[0].dtype
    engine: Engine = build_engine(
        bundle.model_dir, bundle.tokenizer, EngineSettings(backend=backend, dtype=dtype), bundle.templates.answer
    )
    await engine.start()
    rec = bundle.recommender(engine)
    options = GenerationOptions(max_tokens=cfg.tokens)
    direct, http = [], []
    try:
        samples = histories(cfg.data, cfg.overhead_requests)
        async with httpx.AsyncClient(timeout=600) as client:
            for i, s in enumerate(samples):
                body = history_body(s, cfg.tokens)
                seen = [e.item_id for e in s.history]  # what the API's exclude_history leaves out, as the service
                for order in (0, 1) if i % 2 == 0 else (1, 0):
                    t = time.perf_counter()
                    if order == 0:
                        uv = await rec.user_vector(s.history, s.now, options, f"d{i}", exclude=seen)
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
        "dtype": dtype,
        "tokens": cfg.tokens,
        "in_process": d,
        "http": h,
        "ratio_http_vs_in_process": h["p50_ms"] / d["p50_ms"],
    }


# -- scenario 3: bounded closed loops ----------------------------------------------------------------------------


def scenario_scaling(cfg: BenchConfig) -> dict[str, Any]:
    """One table per backend in ``cfg.scaling_backend`` (comma-separated; "default": the server's own choice)."""
    return {"backends": {b: scaling_one(cfg, b) for b in cfg.scaling_backend.split(",")}}


def scaling_one(cfg: BenchConfig, backend: str) -> dict[str, Any]:
    extra = {"R2EC_MAX_BATCH": str(max(cfg.concurrency)), "R2EC_REQUEST_TIMEOUT_S": str(cfg.scaling_seconds)}
    srv = start_server(cfg.bundle, backend, extra, threads=cfg.threads)
    n = cfg.scaling_requests
    rows: dict[str, dict[str, Any]] = {}
    try:
        info = httpx.get(srv.url + "/info", timeout=30).json()
        samples = histories(cfg.data, n * len(cfg.concurrency) + 1)
        bodies = [request_body(history_body(s, cfg.tokens)) for s in samples]
        warm, bodies = bodies[-1:], bodies[:-1] or bodies
        load(srv.url, warm, 1, 1, cfg.scaling_seconds)  # first-request costs, not measured
        for j, c in enumerate(cfg.concurrency):
            rows[str(c)] = loop_summary(load(srv.url, level_bodies(bodies, j, n), c, n, cfg.scaling_seconds))
            row = rows[str(c)]
            cfg.progress(f"  scaling ({backend}): {c} clients, {row['requests']} requests -> {row['rps']:.3f} req/s")
    finally:
        srv.stop()
    base = rows[str(cfg.concurrency[0])].get("rps") or 0.0
    for row in rows.values():
        row["speedup_vs_1"] = (row.get("rps") or 0) / base if base > 0 else None
    return {
        "backend": backend,
        "served_by": {"backend": info.get("backend"), "dtype": info.get("dtype")},
        "tokens": cfg.tokens,
        "requests_per_level": n,
        "seconds_limit_per_level": cfg.scaling_seconds,
        "levels": rows,
    }


# -- scenario 4: the cache hit against its floor -------------------------------------------------------------------

HOT_POOL = 8  # distinct histories behind the cache-hit requests


def scenario_hot(cfg: BenchConfig, work: Path) -> dict[str, Any]:
    """Cache hits on ``r2ec serve`` (transformers backend, in-process cache) and on the floor (bare FastAPI under
    the same uvicorn settings sending a copy of our cache-hit reply), ``cfg.hot_users`` clients of the raw-socket
    client, in alternating runs of the same size; then reasoning-free requests on ``r2ec serve``."""
    srv = start_server(cfg.bundle, "transformers", threads=cfg.threads)
    floor: FloorServer | None = None
    try:
        hot = [request_body(history_body(s, cfg.tokens, use_cache=True)) for s in histories(cfg.data, HOT_POOL)]
        filled = load(srv.url, hot, 1, len(hot), 600)  # one miss each fills the cache
        if filled.failures:
            raise RuntimeError(f"hot: {filled.failures} of the cache-filling requests failed")
        reply = load(srv.url, hot[:1], 1, 1, 60, keep_bodies=True).done[0].body or b""
        if not json.loads(reply).get("cached"):
            raise RuntimeError("hot: a repeated request was not answered from the cache")
        marker = b'"cached":true' if b'"cached":true' in reply else b'"cached": true'

        def is_hit(status: int, body: bytes) -> bool:
            return status == 200 and marker in body

        (work / "floor-reply.json").write_bytes(reply)
        floor = FloorServer(work / "floor-reply.json")
        floor.start()
        servers = {"cache_hit": srv.url, "floor": floor.url}
        warm_up = min(cfg.hot_requests, 1000)
        for url in servers.values():  # connections, allocators, first-call paths: not measured
            load(url, hot, cfg.hot_users, warm_up, cfg.hot_seconds, check=is_hit)
        runs: dict[str, list[LoopResult]] = {name: [] for name in servers}
        per_run = max(1, cfg.hot_requests // max(cfg.hot_rounds, 1))
        for r in range(max(cfg.hot_rounds, 1)):
            order = list(servers) if r % 2 == 0 else list(reversed(servers))
            for name in order:
                runs[name].append(load(servers[name], hot, cfg.hot_users, per_run, cfg.hot_seconds, check=is_hit))
            cfg.progress(f"  hot: round {r + 1}/{cfg.hot_rounds} ({' then '.join(order)})")
        floor.stop()
        free_samples = histories(cfg.data, cfg.hot_free_requests)
        free_bodies = [request_body(history_body(s, cfg.tokens, reasoning=False)) for s in free_samples]
        free = load(srv.url, free_bodies, cfg.hot_users, cfg.hot_free_requests, cfg.hot_seconds)
        cfg.progress("  hot: reasoning-free done")
    finally:
        if floor is not None:
            floor.stop()
        srv.stop()
    hit, base = loop_summary(merge_loops(runs["cache_hit"])), loop_summary(merge_loops(runs["floor"]))

    def ratio(key: str) -> float | None:
        return hit[key] / base[key] if hit.get(key) and base.get(key) else None

    return {
        "users": cfg.hot_users,
        "requests_per_server": per_run * max(cfg.hot_rounds, 1),
        "rounds": max(cfg.hot_rounds, 1),
        "reply_bytes": len(reply),
        "client": "loadtests.rawhttp (asyncio raw sockets, keep-alive)",
        "cache_hit": hit,
        "floor": base,
        "ratio_p50_vs_floor": ratio("p50_ms"),
        "ratio_p99_vs_floor": ratio("p99_ms"),
        "target_p99_ratio": 1.5,
        "reasoning_free": loop_summary(free),
    }


# -- scenario 1b ------------------------------------------------------------------------------------------------


async def scenario_budget(cfg: BenchConfig, bundle: Bundle) -> dict[str, Any]:
    """Reasoning cut by its budget, as served: ``<answer>`` forced in the generation (its own last step is the
    vector) against a capture pass after it, alone and ``budget_concurrency`` at a time. Each group of prompts
    runs both ways, in alternating order, each time from an emptied prefix cache with the group's prompts warmed
    (a capture pass would otherwise find the forced run's blocks); one engine, started with the
    processor installed, its mode switched between runs (the pass runs beside an idle processor)."""
    from r2ec.engine.base import final

    dtype = candidates("vllm", None, bundle.generation.dtype)[0].dtype
    engine = build_engine(
        bundle.model_dir,
        bundle.tokenizer,
        EngineSettings(backend="vllm", dtype=dtype, max_model_len=4096, max_batch=16, vllm_answer_at_budget="on"),
        bundle.templates.answer,
        bundle.generation.extra_stops,
    )
    await engine.start()
    rec = bundle.recommender(engine)
    options = GenerationOptions(max_tokens=cfg.tokens)
    levels: dict[str, Any] = {}
    try:
        messages = [service_message(rec, s) for s in histories(cfg.data, cfg.budget_prompts)]

        async def run(group: list[str], mode: str, tag: str) -> tuple[float, dict[str, int], list[str]]:
            if not await engine.llm.reset_prefix_cache():  # type: ignore[attr-defined]
                raise RuntimeError("vLLM did not empty its prefix cache: the two runs would not be comparable")
            for i, m in enumerate(group):
                await engine.generate(
                    rec.renderer.generation_prompt_ids(m), GenerationOptions(1, fixed_length=True), f"w{i}"
                )
            engine.answer_at_budget = mode  # type: ignore[attr-defined]
            before = rec.vector_sources()
            t = time.perf_counter()
            done = await asyncio.gather(
                *(
                    final(rec.stream_user_vector(m, options, f"{tag}-{i}"), "no user vector")
                    for i, m in enumerate(group)
                )
            )
            elapsed = time.perf_counter() - t
            after = rec.vector_sources()
            reasons = [uv.generation.finish_reason if uv.generation else "none" for uv in done]
            return elapsed, {k: after[k] - before[k] for k in after}, reasons

        for c in (1, cfg.budget_concurrency):
            groups = [messages[i : i + c] for i in range(0, len(messages) - c + 1, c)]
            if not groups:
                continue  # fewer prompts than one group
            times: dict[str, list[float]] = {"on": [], "off": []}
            sources = {mode: {"generation": 0, "capture": 0} for mode in times}
            ended: list[str] = []
            for g, group in enumerate(groups):
                for mode in ("on", "off") if g % 2 == 0 else ("off", "on"):
                    elapsed, moved, reasons = await run(group, mode, f"b{c}-{g}-{mode}")
                    times[mode].append(elapsed)
                    for k, v in moved.items():
                        sources[mode][k] += v
                    ended += reasons
                cfg.progress(f"  budget: {c} at a time, group {g + 1}/{len(groups)}")
            paired = [a / b for a, b in zip(times["on"], times["off"], strict=True)]
            levels[str(c)] = {
                "groups": len(groups),
                "forced": dist(times["on"]),
                "capture_pass": dist(times["off"]),
                "ratio_forced_vs_capture_pass_paired": statistics.median(paired),
                "vector_sources": sources,
                "ended_by": {r: ended.count(r) for r in sorted(set(ended))},
            }
    finally:
        await engine.close()
    return {"dtype": dtype, "tokens": cfg.tokens, "prompts": len(messages), "levels": levels}
