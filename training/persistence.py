"""Adapters and checkpoints on disk, written atomically (a crash never leaves half an adapter under its name)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

CHECKPOINT = "checkpoint"


def trainable_model(
    model_dir: Path,
    bf16: bool,
    out: Path,
    resume: bool,
    init_adapter: Path | None,
    fresh: Callable[[Any], Any],
    device: str = "cpu",
) -> tuple[Any, int, Any]:
    """(tokenizer, pad id, PEFT model) to train: OUT/checkpoint's adapter when resuming, else ``init_adapter``
    (a fresh optimiser either way but for the checkpoint's), else a new LoRA from ``fresh(base) -> LoraConfig``."""
    from peft import PeftModel, get_peft_model
    from transformers import AutoTokenizer

    from r2ec.encoder import pad_id_of
    from r2ec.models import load_causal_lm

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    base = load_causal_lm(model_dir, "bfloat16" if bf16 else "float32", device=device, train=True)
    ckpt = out / CHECKPOINT
    if resume and (ckpt / "adapter_config.json").is_file():
        model = PeftModel.from_pretrained(base, str(ckpt), is_trainable=True)
    elif init_adapter is not None:
        model = PeftModel.from_pretrained(base, str(init_adapter), is_trainable=True)
    else:
        model = get_peft_model(base, fresh(base))
    return tokenizer, pad_id_of(tokenizer), model


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
