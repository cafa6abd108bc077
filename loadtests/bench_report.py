"""docs/benchmarks.md rendered from the benchmark record (loadtests/bench_record.py writes and checks the record)."""

from __future__ import annotations

from typing import Any


def _ms(d: dict[str, Any], key: str = "p50_ms") -> str:
    v = d.get(key)
    return "-" if v is None else f"{v:,.1f}"


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def _steal(per_round: dict[str, list[float | None]] | None) -> str:
    """A level's CPU steal, each server's rounds together as the mean of their shares (``-`` not measured)."""

    def mean(shares: list[float | None]) -> str:
        known = [x for x in shares if x is not None]
        return f"{100 * sum(known) / len(known):.1f}" if known else "-"

    if not per_round:
        return "-"
    return f"{mean(per_round.get('recommend') or [])} / {mean(per_round.get('vllm') or [])}"


def _table(caption: str, columns: list[str]) -> list[str]:
    """A table's caption and head (its separator has as many cells as ``columns``)."""
    return [caption, "", _row(*columns), "|" + "---|" * len(columns)]


def _latencies(d: dict[str, Any]) -> list[str]:
    """The p50 / p95 / p99 cells of a latency distribution."""
    return [_ms(d), _ms(d, "p95_ms"), _ms(d, "p99_ms")]


def _load_row(label: str, row: dict[str, Any], rps_digits: int, *extra: str) -> str:
    """One table row of a load level: requests, failures, req/s, [extra columns], p50 / p95 / p99."""
    counts = [f"{row.get('requests', 0):.0f}", f"{row.get('failures', 0):.0f}", f"{row.get('rps', 0):.{rps_digits}f}"]
    return _row(label, *counts, *extra, *_latencies(row))


def _bf16_note(verdict: dict[str, Any] | None) -> str:
    """Where `auto` timed bfloat16 against float32 (AVX512-BF16 without AMX), what it found and chose."""
    if not verdict or verdict.get("slowdown") is None:
        return ""
    chosen = "bfloat16" if verdict["pays"] else "the bundle's dtype"
    return f" (a bfloat16 product takes {verdict['slowdown']:.2f}x float32's time here, so `auto` serves {chosen})"


def render_markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"Measured {result['started']} on {m['cpu']} ({m['cores']} cores, {m['memory_gib']} GiB"
        + {True: ", native bfloat16", False: ", no native bfloat16", None: ""}[m.get("native_bf16")]
        + _bf16_note(m.get("bf16_verdict"))
        + f"{', GPU ' + m['gpu'] if m['gpu'] else ', no GPU'}); commit `{m['commit']}`, torch {m['torch']}, "
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
        lines += ["## 1. Hidden-state capture cost", ""]
        lines += _table(
            f"{c['backend']} backend, {c['prompts']} prompts from real histories, exactly {c['tokens']} generated "
            f"tokens (fixed length), batch size 1, capture: `{c['capture_mode']}`.",
            ["path", "p50", "p95", "p99", "ratio to generation (p50)"],
        )
        lines += [
            _row("generation only", *_latencies(c["generation_only"]), "1.00"),
            _row(
                f"generation + capture (`{c['capture_mode']}`)",
                *_latencies(c["generation_plus_capture"]),
                f"**{c['ratio_capture_vs_generation']:.3f}**",
            ),
            *(
                [_row("the capture alone (inside the same requests)", *_latencies(c["capture_only"]), "")]
                if "capture_only" in c
                else []
            ),
            _row(
                "authors' way: generation + full transformers forward",
                *_latencies(c["authors_generation_plus_hf_forward"]),
                f"{c['ratio_authors_vs_generation']:.3f}",
            ),
            "",
        ]
        lines += _capture_tokens(c)
        lines += _served_capture(c.get("served"))
    if "budget" in s:
        lines += _budget(s["budget"])
    if "overhead" in s:
        o = s["overhead"]
        dtype = f" ({o['dtype']} on both sides)" if o.get("dtype") else ""
        lines += ["## 2. Service overhead", ""]
        lines += _table(
            f"{o['backend']} backend{dtype}, concurrency 1, reasoning on ({o['tokens']} tokens max, greedy), no cache.",
            ["path", "p50", "p95", "p99"],
        )
        lines += [
            _row("engine API in-process", *_latencies(o["in_process"])),
            _row("HTTP /v1/recommend", *_latencies(o["http"])),
            "",
            f"Ratio HTTP / in-process (p50): **{o['ratio_http_vs_in_process']:.3f}**.",
            "",
        ]
    if "scaling" in s:
        lines += ["## 3. Concurrency scaling", ""]
        for backend, sc in s["scaling"]["backends"].items():
            served = sc.get("served_by") or {}
            what = f"{backend} backend (served by {served.get('backend')} in {served.get('dtype')})"
            lines += _table(
                f"{what}, reasoning on ({sc['tokens']} tokens max), closed loop of {sc['requests_per_level']} "
                f"requests per level (time limit {sc['seconds_limit_per_level']} s), raw-socket client.",
                ["clients", "requests", "failures", "req/s", "speed-up vs 1", "p50", "p95", "p99"],
            )
            for c, row in sc["levels"].items():
                lines.append(_load_row(c, row, 3, f"{row.get('speedup_vs_1') or 0:.2f}x"))
            lines.append("")
    if "hot" in s:
        lines += _hot(s["hot"])
    if "catalog" in s:
        lines += _catalog(s["catalog"])
    if "vllm" in s:
        lines += _vllm(s["vllm"])
    return "\n".join(lines) + "\n"


def _budget(b: dict[str, Any]) -> list[str]:
    lines = ["## 1b. Reasoning cut by its budget: `<answer>` forced, or a capture pass", ""]
    lines += _table(
        f"vLLM ({b['dtype']}), {b['prompts']} real histories, reasoning cut at {b['tokens']} tokens, as served (the "
        "bundle's stops and conclusion; vector, ranking not included). Each group ran both ways, alternating which "
        "went first, from an emptied prefix cache with its prompts warmed; times are of the whole group. "
        "`vllm_answer_at_budget` auto forces where other generations are in flight.",
        [
            "at a time",
            "groups",
            "forced p50",
            "capture pass p50",
            "forced / capture pass (median of pairs)",
            "vectors from the generation (forced / pass)",
            "ended by",
        ],
    )
    for c, row in b["levels"].items():
        src = row["vector_sources"]
        ended = ", ".join(f"{k} {v}" for k, v in row["ended_by"].items())
        lines.append(
            f"| {c} | {row['groups']} | {row['forced'].get('p50_ms', 0):.0f} | "
            f"{row['capture_pass'].get('p50_ms', 0):.0f} | **{row['ratio_forced_vs_capture_pass_paired']:.3f}** | "
            f"{src['on']['generation']} of {src['on']['generation'] + src['on']['capture']} / "
            f"{src['off']['generation']} of {src['off']['generation'] + src['off']['capture']} | {ended} |"
        )
    return [*lines, ""]


def _served_capture(v: dict[str, Any] | None) -> list[str]:
    if not v or not v.get("prompts"):
        return []
    ended = ", ".join(f"{reason} {n}" for reason, n in v["ended_by"].items())
    lines = [
        f"As served ({v['prompts']} of the prompts, reasoning to `<answer>` within {v['max_tokens']} tokens; ended "
        f"by: {ended}): **{v['vector_from_generation']}** user vectors were the generation's own last step (no "
        f"capture pass), {v['vector_from_capture_pass']} needed a capture pass.",
        "",
    ]
    lines += [_row("user vector", "n", "p50", "p95", "p99"), "|---|---|---|---|---|"]
    for label, key in (
        ("generation (for scale)", "generation"),
        ("taken from the generation's last step", "capture_from_generation"),
        ("a capture pass", "capture_pass"),
    ):
        d = v[key]
        lines.append(_row(label, str(d.get("n", 0)), *_latencies(d)) if d.get("n") else _row(label, "0", "", "", ""))
    return [*lines, ""]


def _capture_tokens(c: dict[str, Any]) -> list[str]:
    t = c.get("capture_tokens") or {}
    if not t.get("n"):
        return []

    def num(key: str) -> str:
        v = t.get(key)
        return "-" if v is None else f"{v:,.1f}"

    ratio = t.get("ratio_tokens_capture_vs_generation")
    return [
        f"Tokens per request of the generation + capture path (n = {t['n']}; {t['source']}): the generation had "
        f"{num('generation_prompt_tokens')} prompt tokens ({num('generation_cached_tokens')} from the prefix cache) "
        f"and generated {num('generated_tokens')}; the capture pass submitted {num('capture_sequence_tokens')} "
        f"tokens, {num('capture_cached_tokens')} of them from the prefix cache, so it computed "
        f"**{num('capture_extra_tokens')}** extra tokens. (generation + capture) / generation: "
        f"**{'-' if ratio is None else f'{ratio:.3f}'}** in tokens (prompt counted in full), "
        f"**{c['ratio_capture_vs_generation']:.3f}** in p50 latency.",
        "",
        *(
            [
                "Per prompt (each ran both ways, interleaved), the median of (generation + capture) / generation "
                f"is **{c['ratio_capture_vs_generation_paired']:.3f}**, and the median of 1 + capture / "
                f"generation inside the same request **{c['ratio_capture_vs_generation_direct']:.3f}**: both "
                "leave out the spread between prompts that the ratio of two p50s keeps.",
                "",
            ]
            if "ratio_capture_vs_generation_paired" in c
            else []
        ),
    ]


def _hot(h: dict[str, Any]) -> list[str]:
    lines = ["## 4. Cache-hit path against its floor", ""]
    lines += _table(
        f"{h['users']} concurrent clients (raw-socket keep-alive client, `loadtests/rawhttp.py`), "
        f"{h['requests_per_server']:,} requests per server in {h['rounds']} alternating runs; `r2ec serve` on the "
        f"transformers backend with the in-process cache (no Redis); the floor is bare FastAPI under the same uvicorn "
        f"settings sending the same {h['reply_bytes']:,}-byte reply.",
        ["path", "requests", "failures", "req/s", "p50", "p95", "p99"],
    )
    lines.append(_load_row("cache hit (r2ec serve)", h["cache_hit"], 0))
    lines.append(_load_row("floor (bare FastAPI, same reply)", h["floor"], 0))
    lines.append(_load_row("reasoning-free (r2ec serve)", h["reasoning_free"], 2))
    p99, p50 = h.get("ratio_p99_vs_floor"), h.get("ratio_p50_vs_floor")
    lines += [
        "",
        f"Cache hit / floor: p99 **{'-' if p99 is None else f'{p99:.2f}'}** (target <= {h['target_p99_ratio']}), "
        f"p50 {'-' if p50 is None else f'{p50:.2f}'}.",
        "",
    ]
    if p99 is not None and p99 < 1.0:
        lines += [
            "Below 1 is not noise alone: an identical deterministic request is answered from `service/replies.py` by "
            "the ASGI middleware before FastAPI routes it, so a cache hit runs less Python than the floor's one "
            "FastAPI handler; the floor bounds what a FastAPI route could do, not what the middleware does.",
            "",
        ]
    return lines


def _setting(row: dict[str, Any]) -> str:
    if "nprobe" in row:
        return f"nprobe {row['nprobe']}/{row['nlist']}"
    if "ef_search" in row:
        return f"efSearch {row['ef_search']}"
    return "-"


def _catalog(cat: dict[str, Any]) -> list[str]:
    lines = ["## 5. Catalog scale", ""]
    lines += _table(
        f"Synthetic clustered unit vectors, dim {cat['dim']}, {cat['queries']} single queries, top-10; IVF trained on "
        "at most 64 vectors per list (a seeded sample), HNSW M 32, efConstruction 200; recall against the exact top "
        "10.",
        ["items", "index", "setting", "build s", "search p50", "p99", "recall@10 vs exact"],
    )
    for row in cat["rows"]:
        items, index = f"{row['items']:,}", f"{row['index']}"
        if "skipped" in row:
            lines.append(_row(items, index, "-", "-", "-", "-", f"skipped: {row['skipped']}"))
        else:
            search = row["search"]
            cells = [str(row.get("build_s", "-")), f"{search['p50_ms']:.3f}", f"{search['p99_ms']:.3f}"]
            lines.append(_row(items, index, _setting(row), *cells, f"{row['recall_at_10']:.3f}"))
    lines.append("")
    target = cat.get("recall_target", 0.95)
    for items, kinds in (cat.get("smallest_reaching_target") or {}).items():
        said = []
        for kind, found in kinds.items():
            if found is None:
                said.append(f"{kind}: none of the settings tried")
            elif "skipped" in found:
                said.append(f"{kind}: skipped")
            else:
                setting = "nprobe" if "nprobe" in found else "ef_search"
                said.append(
                    f"{kind}: {setting} {found[setting]} (recall {found['recall_at_10']:.3f}, "
                    f"p50 {found['p50_ms']:.3f} ms)"
                )
        lines.append(f"- {int(items):,} items, smallest setting with recall@10 >= {target}: " + "; ".join(said))
    lines.append("")
    return lines


def _vllm(v: dict[str, Any]) -> list[str]:
    e = v["settings"]
    lines = ["## 6. r2ec serve against vLLM's own server", ""]
    lines += [
        f"The same prompts (the token ids our service feeds its engine), greedy, at most {v['tokens']} output tokens, "
        f"stop `<answer>` (ours counts `<answer>` in its budget: where the budget cuts its reasoning, it writes "
        f'{v["tokens"]} - len(`<answer>`) tokens of its own and then `<answer>`; "same tokens": the same number '
        f"of output tokens, and the same text as far as ours goes); "
        f"`POST /v1/recommend` (generation, capture, ranking; no cache) on `r2ec serve --backend vllm` "
        f"against `POST /v1/completions` on `{v['vllm_server']['command']}`. Both: max_model_len "
        f"{e['max_model_len']}, enforce_eager {e['enforce_eager']}, max_num_seqs {e['max_num_seqs']}, KV cache "
        f"{e['kv_cache_gib']} GiB, KV block size {e.get('block_size') or 'vLLM default'}, prefix caching on, "
        f"seed {e['seed']}. Closed loop of {v['requests_per_level']} requests per level and server"
        + (
            f", in {v['rounds_per_level']} rounds per server whose order alternates (A B, B A, ...); a level's "
            "figures are its rounds together"
            if v.get("rounds_per_level", 1) > 1
            else ""
        )
        + "; one server loaded at a time, the first server alternating per level.",
        "",
    ]
    for dtype, d in v["dtypes"].items():
        cores = d.get("vllm_worker_cores")
        ours = ((d.get("served_by") or {}).get("cpu_binding") or {}).get("cores")
        lines += _table(
            f"dtype {dtype}"
            + (f"; vLLM's CPU worker bound to cores {cores}" if cores else "")
            + (f"; our model's threads bound to cores {ours}" if ours else "")
            + ".",
            [
                "clients",
                "recommend req/s",
                "vLLM req/s",
                "req/s ratio",
                "recommend p50",
                "vLLM p50",
                "p50 ratio",
                "ratio per round",
                "CPU steal % (ours / vLLM)",
                "same tokens",
            ],
        )
        for c, row in d["levels"].items():
            r, w = row["recommend"], row["vllm"]
            agree = row.get("agreement", {}).get("same_tokens")
            lines.append(
                _row(
                    c,
                    f"{r.get('rps', 0):.3f}",
                    f"{w.get('rps', 0):.3f}",
                    "-" if row.get("rps_ratio") is None else f"**{row['rps_ratio']:.3f}**",
                    _ms(r),
                    _ms(w),
                    "-" if row.get("p50_ratio") is None else f"{row['p50_ratio']:.3f}",
                    ", ".join("-" if x is None else f"{x:.2f}" for x in row.get("rps_ratio_per_round") or []) or "-",
                    _steal(row.get("steal_per_round")),
                    "-" if agree is None else f"{agree:.2f}",
                )
            )
        lines.append("")
    return lines
