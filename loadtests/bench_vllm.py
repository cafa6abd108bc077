"""``r2ec bench`` scenario 6: ``r2ec serve --backend vllm`` against what a user would run instead, vLLM's own
OpenAI server (``python -m vllm.entrypoints.openai.api_server``) on the same model directory with the engine
settings our vLLM backend uses (dtype, context length, eager mode, max running sequences, KV cache, prefix
caching, seed).

Both servers generate from the same prompts: for each real history, ours gets ``POST /v1/recommend`` (no cache,
``as_of`` the sample's time) and vLLM gets ``POST /v1/completions`` whose ``prompt`` is the token ids our service
feeds its engine for that request (``Recommender.prompt_for`` + ``generation_prompt_ids``), greedy, the same
budget and stops. Ours then also captures the user vector and ranks; that is what the ratio prices. Both servers
are up for the whole scenario but only one receives load at a time. Each level runs in ``vllm_rounds`` rounds per
server, the order alternating round by round (A B, B A, ...), so that a drift of the machine's speed during the
level weighs on both alike; a level's figures are its rounds' requests together, and each round's ratio is kept.
"""

from __future__ import annotations

import json
import os
import re
from itertools import pairwise
from typing import Any, cast

import httpx

from loadtests.bench_harness import (
    BenchConfig,
    CpuTimes,
    histories,
    history_body,
    level_bodies,
    load,
    loop_summary,
    merge_loops,
    request_body,
    service_message,
    steal_share,
)
from loadtests.bench_record import public_path
from loadtests.launcher import ServerProcess, VLLMServer, start_all
from loadtests.rawhttp import LoopResult
from model_export.bundle import Bundle
from r2ec.engine.base import Engine
from r2ec.engine.factory import EngineFields
from r2ec.engine.reasoning import INCOMPLETE
from r2ec.engine.selection import candidates, usable_cores
from r2ec.engine.vllm import reserved_cores, resolve_block_size
from r2ec.models import stop_token_ids

SERVED_NAME = "r2ec-bench"


def engine_settings(cfg: BenchConfig) -> dict[str, Any]:
    """What both servers run with: our vLLM backend's settings (its defaults where the bench sets nothing)."""
    fields = EngineFields.model_fields
    return {
        "max_model_len": int(fields["max_model_len"].default),
        "enforce_eager": bool(fields["vllm_enforce_eager"].default),
        "max_num_seqs": max(cfg.concurrency),
        "kv_cache_gib": cfg.vllm_kv_cache_gib,
        "gpu_memory_utilization": cfg.vllm_gpu_memory_utilization,
        "prefix_caching": True,  # VLLMEngine always enables it (the capture pass reuses the generation's blocks)
        "block_size": resolve_block_size(int(fields["vllm_block_size"].default)),
        "seed": 0,
    }


def our_server(cfg: BenchConfig, dtype: str, e: dict[str, Any]) -> ServerProcess:
    env = {
        "R2EC_BACKEND": "vllm",
        "R2EC_DTYPE": dtype,
        "R2EC_MAX_BATCH": str(e["max_num_seqs"]),
        "R2EC_MAX_MODEL_LEN": str(e["max_model_len"]),
        "R2EC_VLLM_ENFORCE_EAGER": str(e["enforce_eager"]).lower(),
        "R2EC_VLLM_KV_CACHE_GIB": str(e["kv_cache_gib"]),
        "R2EC_VLLM_GPU_MEMORY_UTILIZATION": str(e["gpu_memory_utilization"]),
        "R2EC_REQUEST_TIMEOUT_S": str(cfg.vllm_seconds),
        "R2EC_MAX_QUEUE": "512",
        "R2EC_LOG_LEVEL": "warning",
        "VLLM_CPU_KVCACHE_SPACE": str(e["kv_cache_gib"]),
    }
    if e["block_size"] is not None:
        env["R2EC_VLLM_BLOCK_SIZE"] = str(e["block_size"])
    if cfg.threads:
        env["R2EC_THREADS"] = str(cfg.threads)
    return ServerProcess(cfg.bundle, env)


def vllm_args(dtype: str, e: dict[str, Any]) -> list[str]:
    block = ["--block-size", str(e["block_size"])] if e["block_size"] is not None else []
    return [
        *block,
        "--dtype",
        dtype,
        "--max-model-len",
        str(e["max_model_len"]),
        "--enforce-eager" if e["enforce_eager"] else "--no-enforce-eager",
        "--max-num-seqs",
        str(e["max_num_seqs"]),
        "--enable-prefix-caching",
        "--gpu-memory-utilization",
        str(e["gpu_memory_utilization"]),
        "--seed",
        str(e["seed"]),
        # One worker; vLLM's CPU platform runs it in a worker process of its own (`r2ec serve --no-vllm-in-process`).
        "--distributed-executor-backend",
        "uni",
    ]


def vllm_reserved(cfg: BenchConfig) -> int | None:
    """The cores vLLM's own server keeps off its worker: ``--vllm-reserved-cpus``, else as `r2ec serve` binds its
    own engine on this machine (its ``vllm_cpu_reserved`` read from the environment the bench passes on), so that
    both forwards get the same cores; None: vLLM's default."""
    from service.settings import Settings

    if cfg.vllm_reserved_cpus is not None:
        return cfg.vllm_reserved_cpus
    return reserved_cores(Settings().vllm_cpu_reserved, os.environ, usable_cores())


def vllm_server(cfg: BenchConfig, bundle: Bundle, dtype: str, e: dict[str, Any]) -> VLLMServer:
    env = {"VLLM_CPU_KVCACHE_SPACE": str(e["kv_cache_gib"])}
    reserved = vllm_reserved(cfg)
    if reserved is not None:
        env["VLLM_CPU_NUM_OF_RESERVED_CPU"] = str(reserved)
    return VLLMServer(bundle.model_dir, SERVED_NAME, vllm_args(dtype, e), env)


def paired_bodies(cfg: BenchConfig, bundle: Bundle, samples: list[Any]) -> tuple[list[bytes], list[bytes]]:
    """For each sample: our /v1/recommend body and vLLM's /v1/completions body with the same prompt token ids."""
    rec = bundle.recommender(cast(Engine, None))  # the prompt side only: no engine runs in this process
    stops = sorted(stop_token_ids(bundle.tokenizer, model_dir=bundle.model_dir))
    ours, theirs = [], []
    for s in samples:
        ours.append(request_body(history_body(s, cfg.tokens)))
        ids = rec.renderer.generation_prompt_ids(service_message(rec, s))
        body = {"model": SERVED_NAME, "prompt": ids, "max_tokens": cfg.tokens, "temperature": 0.0}
        body |= {"stop": [bundle.templates.answer], "stop_token_ids": stops, "skip_special_tokens": True}
        theirs.append(request_body(body))
    return ours, theirs


def round_slices(n: int, rounds: int) -> list[slice]:
    """``n`` requests in ``rounds`` consecutive parts as even as can be (each a different stretch of histories)."""
    bounds = [n * k // rounds for k in range(rounds + 1)]
    return [slice(a, b) for a, b in pairwise(bounds) if b > a]


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _ours(body: bytes) -> tuple[int, str, bool]:
    """Output tokens (``<answer>``'s ids included, also where written for a budget-cut reasoning), reasoning, cut."""
    r = json.loads(body)
    return int(r.get("reasoning_tokens") or 0), str(r.get("reasoning") or ""), r.get("finish_reason") == "length"


def _theirs(body: bytes) -> tuple[int, str]:
    r = json.loads(body)
    return int(r["usage"]["completion_tokens"]), str(r["choices"][0]["text"])


def agreement(ours: LoopResult, theirs: LoopResult) -> dict[str, Any]:
    """Per request both answered: the same number of output tokens and the same text (same prompt, greedy). A
    budget counts ``<answer>`` (``GenerationOptions.own_tokens``), so where the budget cut ours, its reasoning
    is the start of vLLM's text, whose last tokens ours spent on ``<answer>``."""
    a = {c.index: _ours(c.body) for c in ours.done if c.ok and c.body is not None}
    b = {c.index: _theirs(c.body) for c in theirs.done if c.ok and c.body is not None}
    both = sorted(set(a) & set(b))
    if not both:
        return {"compared": 0}

    def same_text(i: int) -> bool:
        mine, other = a[i][1].strip(), b[i][1].rstrip(INCOMPLETE).strip()
        return other.startswith(mine) if a[i][2] else mine == other

    tokens = sum(a[i][0] == b[i][0] for i in both)
    text = sum(same_text(i) for i in both)
    return {
        "compared": len(both),
        "same_tokens": tokens / len(both),
        "same_text": text / len(both),
        "mean_tokens_recommend": sum(a[i][0] for i in both) / len(both),
        "mean_tokens_vllm": sum(b[i][0] for i in both) / len(both),
    }


def omp_binding(log: str) -> str | None:
    """The cores vLLM's CPU worker was bound to, as its log says (None: not said, e.g. on a GPU)."""
    m = re.search(r"core ids=(\[[^\]]*\])", log)
    return m.group(1) if m else None


def engine_in_process() -> bool:
    """Where `r2ec serve` runs the model here (vLLM's engine-core process, or a worker of its own): its own
    settings read from the environment it inherits from the bench (R2EC_VLLM_IN_PROCESS, else the default)."""
    from service.settings import Settings

    return Settings().vllm_in_process


def scenario_vllm(cfg: BenchConfig, bundle: Bundle) -> dict[str, Any]:
    e = engine_settings(cfg)
    # By default the dtype `r2ec serve` picks for vLLM on this machine (bfloat16 where it pays: selection).
    dtypes = cfg.vllm_dtypes or (candidates("vllm", None, bundle.generation.dtype)[0].dtype,)
    return {
        "tokens": cfg.tokens,
        "requests_per_level": cfg.vllm_requests,
        "rounds_per_level": cfg.rounds_per_level,
        "seconds_limit_per_level": cfg.vllm_seconds,
        "settings": e,
        "recommend_server": "r2ec serve --backend vllm (model "
        + ("in vLLM's engine-core process)" if engine_in_process() else "in a worker process of its own)"),
        "vllm_server": {
            "command": "python -m vllm.entrypoints.openai.api_server --model "
            + public_path(bundle.model_dir)
            + " "
            + " ".join(vllm_args("DTYPE", e)),
            "reserved_cpus": vllm_reserved(cfg),
            "omp_wait_policy": "unset (the OpenMP runtime's default, as r2ec's worker by default)",
        },
        "dtypes": {d: vllm_one(cfg, bundle, d, e) for d in dtypes},
    }


def vllm_one(cfg: BenchConfig, bundle: Bundle, dtype: str, e: dict[str, Any]) -> dict[str, Any]:
    n = cfg.vllm_requests
    samples = histories(cfg.data, n * len(cfg.concurrency) + 1)
    ours_bodies, theirs_bodies = paired_bodies(cfg, bundle, samples)
    warm = (ours_bodies[-1:], theirs_bodies[-1:])
    if len(samples) > 1:
        ours_bodies, theirs_bodies = ours_bodies[:-1], theirs_bodies[:-1]
    ours, theirs = our_server(cfg, dtype, e), vllm_server(cfg, bundle, dtype, e)
    cfg.progress(f"  vllm ({dtype}): starting r2ec serve and vLLM's server")
    start_all([ours, theirs])
    paths = {"recommend": "/v1/recommend", "vllm": "/v1/completions"}
    levels: dict[str, dict[str, Any]] = {}
    try:
        reported = httpx.get(ours.url + "/info", timeout=30).json()
        info = {k: reported.get(k) for k in ("backend", "dtype", "capture")}
        # The cores the engine's forward was bound to (None: not bound by us, e.g. out of process or on a GPU).
        info["cpu_binding"] = httpx.get(ours.url + "/ready", timeout=30).json()["engine"].get("cpu_binding")
        for name, srv, body in (("recommend", ours, warm[0]), ("vllm", theirs, warm[1])):
            load(srv.url, body, 1, 1, cfg.vllm_seconds, path=paths[name])  # first-request costs, not measured
        rounds = cfg.rounds_per_level
        for j, c in enumerate(cfg.concurrency):
            first = ("recommend", "vllm") if j % 2 == 0 else ("vllm", "recommend")
            runs: dict[str, list[LoopResult]] = {"recommend": [], "vllm": []}
            steal: dict[str, list[float | None]] = {"recommend": [], "vllm": []}
            orders: list[list[str]] = []
            for k, part in enumerate(round_slices(n, rounds)):
                order = first if k % 2 == 0 else first[::-1]
                orders.append(list(order))
                for name in order:
                    srv_url = ours.url if name == "recommend" else theirs.url
                    bodies = level_bodies(ours_bodies if name == "recommend" else theirs_bodies, j, n)[part]
                    before = CpuTimes.now()
                    runs[name].append(
                        load(srv_url, bodies, c, len(bodies), cfg.vllm_seconds, path=paths[name], keep_bodies=True)
                    )
                    steal[name].append(steal_share(before, CpuTimes.now()))
            merged = {name: merge_loops(rs) for name, rs in runs.items()}
            r, v = loop_summary(merged["recommend"]), loop_summary(merged["vllm"])
            per_round = [
                _ratio(loop_summary(a)["rps"], loop_summary(b)["rps"])
                for a, b in zip(runs["recommend"], runs["vllm"], strict=True)
            ]
            levels[str(c)] = {
                "order": orders,
                "recommend": r,
                "vllm": v,
                "rps_ratio": _ratio(r.get("rps"), v.get("rps")),
                "p50_ratio": _ratio(r.get("p50_ms"), v.get("p50_ms")),
                "rps_ratio_per_round": per_round,
                # CPU time the hypervisor took during each round, per server: rounds to discount, not to trust
                "steal_per_round": steal,
                "agreement": agreement(merged["recommend"], merged["vllm"]),
            }
            row = levels[str(c)]
            cfg.progress(
                f"  vllm ({dtype}): {c} clients -> recommend {r['rps']:.3f} req/s, vLLM {v['rps']:.3f} req/s "
                f"(ratio {row['rps_ratio'] or 0:.3f})"
            )
        # How the budget-cut generations got their vectors (vllm_answer_at_budget): forced <answer>, or a pass.
        engine = httpx.get(ours.url + "/ready", timeout=30).json()["engine"]
        counters = {k: engine.get(k) for k in ("answer_forced", "final_states", "state_handoff", "prefill")}
    finally:
        ours.stop()
        theirs.stop()
    return {
        "dtype": dtype,
        "served_by": info,
        "vllm_worker_cores": omp_binding(theirs.log()),
        "levels": levels,
        "engine_counters": counters,
    }
