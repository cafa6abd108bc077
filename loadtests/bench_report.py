"""The benchmark record: strict JSON without machine paths, its self-checks, and docs/benchmarks.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from loadtests.bench_harness import ROOT


def _ms(d: dict[str, Any], key: str = "p50_ms") -> str:
    v = d.get(key)
    return "-" if v is None else f"{v:,.1f}"


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


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
            _row(
                "authors' way: generation + full transformers forward",
                *_latencies(c["authors_generation_plus_hf_forward"]),
                f"{c['ratio_authors_vs_generation']:.3f}",
            ),
            "",
        ]
    if "overhead" in s:
        o = s["overhead"]
        lines += ["## 2. Service overhead", ""]
        lines += _table(
            f"{o['backend']} backend, concurrency 1, reasoning on ({o['tokens']} tokens max, greedy), no cache.",
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
            lines += _table(
                f"{backend} backend, reasoning on ({sc['tokens']} tokens max), locust closed loop, "
                f"{sc['seconds_per_level']} s per level.",
                ["clients", "requests", "failures", "req/s", "speed-up vs 1", "p50", "p95", "p99"],
            )
            for c, row in sc["levels"].items():
                lines.append(_load_row(c, row, 3, f"{row.get('speedup_vs_1', 0):.2f}x"))
            lines.append("")
    if "hot" in s:
        h = s["hot"]
        lines += ["## 4. Cache-hit and reasoning-free paths", ""]
        lines += _table(
            f"{h['users']} concurrent clients, {h['seconds']} s each, transformers backend, "
            "in-process cache (no Redis).",
            ["path", "requests", "failures", "req/s", "p50", "p95", "p99"],
        )
        for name in ("cache_hit", "reasoning_free"):
            lines.append(_load_row(name.replace("_", "-"), h[name], 2))
        lines.append("")
    if "catalog" in s:
        cat = s["catalog"]
        lines += ["## 5. Catalog scale", ""]
        lines += _table(
            f"Synthetic clustered unit vectors, dim {cat['dim']}, {cat['queries']} single queries, top-10.",
            ["items", "index", "build s", "search p50", "p99", "recall@10 vs exact"],
        )
        for row in cat["rows"]:
            items, index = f"{row['items']:,}", f"{row['index']}"
            if "skipped" in row:
                lines.append(_row(items, index, "-", "-", "-", f"skipped: {row['skipped']}"))
            else:
                search = row["search"]
                cells = [f"{row['build_s']}", f"{search['p50_ms']:.3f}", f"{search['p99_ms']:.3f}"]
                lines.append(_row(items, index, *cells, f"{row['recall_at_10']:.3f}"))
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
