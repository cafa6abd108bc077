"""Adapters and checkpoints on disk, written atomically (a crash never leaves half an adapter under its name)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

CHECKPOINT = "checkpoint"


def save_adapter(model: Any, path: Path, config: dict[str, Any]) -> None:
    """The PEFT adapter plus the training config that made it, via a sibling temporary directory."""
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(str(tmp))
    (tmp / "training_config.json").write_text(json.dumps(config, indent=2))
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)


def save_checkpoint(model: Any, optimizer: Any, out: Path, config: dict[str, Any], state: dict[str, Any]) -> None:
    """``OUT/checkpoint``: the latest adapter, the optimiser state and the loop state (step, best, ...)."""
    ckpt = out / CHECKPOINT
    save_adapter(model, ckpt, config)
    torch.save(optimizer.state_dict(), ckpt / "optimizer.pt")
    (ckpt / "state.json").write_text(json.dumps(state))


def load_state(out: Path, optimizer: Any) -> dict[str, Any] | None:
    """The loop state of ``OUT/checkpoint`` (and the optimiser restored), or None when there is none."""
    ckpt = out / CHECKPOINT
    if not (ckpt / "state.json").is_file():
        return None
    optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))
    state: dict[str, Any] = json.loads((ckpt / "state.json").read_text())
    return state


def append_metrics(out: Path, record: dict[str, Any]) -> None:
    """One JSON record per step in ``OUT/metrics.jsonl``."""
    with (out / "metrics.jsonl").open("a") as f:
        f.write(json.dumps(record) + "\n")


def write_run_config(out: Path, config: dict[str, Any]) -> None:
    """``OUT/training_config.json``: what this run was asked to do (the directory is created)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "training_config.json").write_text(json.dumps(config, indent=2))


def finish_run(out: Path, steps: int, best: float, stop: str, seconds: float, **extra: Any) -> dict[str, Any]:
    """``OUT/summary.json``: how the run ended and where its adapter is."""
    summary = {
        **extra,
        "steps": steps,
        "best_valid_ndcg@10": best,
        "stop": stop,
        "seconds": round(seconds, 1),
        "adapter": str(out / "adapter"),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
