"""The benchmark record as a file: strict JSON (no NaN), no machine paths, and the checks that refuse an empty run."""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from loadtests.bench_harness import ROOT
from r2ec import paths


def public_path(path: Path) -> str:
    """A path as results may record it: relative to the checkout or to ``~``, else its last component only."""
    return paths.public_path(path, ROOT)


def public_command(args: Sequence[str]) -> str:
    """``r2ec bench`` with ``args``, every absolute or ``~`` path among them (``--x PATH`` or ``--x=PATH``) shown as
    ``public_path`` shows it."""

    def one(arg: str) -> str:
        name, eq, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
        if not eq and arg.startswith("--"):
            name, value = arg, ""
        if value.startswith(("/", "~")):
            value = public_path(Path(value))
        return name + eq + value

    return " ".join(["r2ec bench", *(shlex.quote(one(a)) for a in args)])


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
        need(s["capture"].get("capture_tokens", {}).get("n"), "capture.capture_tokens.n")
    if "overhead" in s:
        for key in ("in_process", "http"):
            need(s["overhead"][key].get("n"), f"overhead.{key}.n")
    if "scaling" in s:
        for backend, table in s["scaling"]["backends"].items():
            for level, row in table["levels"].items():
                need(row.get("requests"), f"scaling.{backend}.{level}.requests")
                need(row.get("rps"), f"scaling.{backend}.{level}.rps")
    if "hot" in s:
        for key in ("cache_hit", "floor", "reasoning_free"):
            need(s["hot"].get(key, {}).get("requests"), f"hot.{key}.requests")
            need(s["hot"].get(key, {}).get("p50_ms"), f"hot.{key}.p50_ms")
    if "vllm" in s:
        for dtype, table in s["vllm"]["dtypes"].items():
            for level, row in table["levels"].items():
                for side in ("recommend", "vllm"):
                    need(row[side].get("requests"), f"vllm.{dtype}.{level}.{side}.requests")
                    need(row[side].get("rps"), f"vllm.{dtype}.{level}.{side}.rps")
    if "catalog" in s:
        for row in s["catalog"]["rows"]:
            if "skipped" not in row:
                need(row["search"].get("p50_ms"), f"catalog.{row['items']}.{row['index']}.p50_ms")
    return out


def save(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(finite(result), indent=2, allow_nan=False) + "\n")
