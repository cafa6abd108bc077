"""Loading a causal LM and what is read off it: one way for the engines, export, training and the benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def torch_dtype(name: str) -> torch.dtype:
    try:
        return _DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; one of {sorted(_DTYPES)}") from None


def load_causal_lm(model_dir: Path | str, dtype: str = "float32", device: str = "cpu", train: bool = False) -> Any:
    """A Hugging Face causal LM in ``dtype`` on ``device``; in eval mode unless it is loaded to be trained."""
    from transformers import AutoModelForCausalLM

    model: Any = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch_dtype(dtype))
    model = model.to(device)
    return model if train else model.eval()


def stop_token_ids(tokenizer: Any, model: Any | None = None) -> set[int]:
    ids: set[int] = set()
    sources = [tokenizer.eos_token_id]
    if model is not None and getattr(model, "generation_config", None) is not None:
        sources.append(model.generation_config.eos_token_id)
    for src in sources:
        if isinstance(src, int):
            ids.add(src)
        elif isinstance(src, (list, tuple)):
            ids.update(int(x) for x in src)
    return ids
