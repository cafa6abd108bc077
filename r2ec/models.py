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


def attention_implementation(config: Any) -> str | None:
    """``eager`` for models whose attention soft-caps its logits (Gemma-2), else transformers' default.

    transformers' SDPA path drops ``attn_logit_softcapping``: on a Gemma-2 model it computes other hidden states
    than the checkpoint was trained with (and than vLLM, which caps; tests/service/test_architectures.py). Eager
    attention applies the cap.
    """
    return "eager" if getattr(config, "attn_logit_softcapping", None) else None


def load_causal_lm(model_dir: Path | str, dtype: str = "float32", device: str = "cpu", train: bool = False) -> Any:
    """A Hugging Face causal LM in ``dtype`` on ``device``; in eval mode unless it is loaded to be trained."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(model_dir))
    model: Any = AutoModelForCausalLM.from_pretrained(
        str(model_dir), config=config, dtype=torch_dtype(dtype), attn_implementation=attention_implementation(config)
    )
    model = model.to(device)
    return model if train else model.eval()


def stop_token_ids(tokenizer: Any, model: Any | None = None, model_dir: Path | str | None = None) -> set[int]:
    """The tokenizer's eos plus the generation config's (Gemma-2-it: ``<eos>`` and ``<end_of_turn>``), read off a
    loaded model or a model directory, so that both engines stop on the same tokens."""
    ids: set[int] = set()
    sources = [tokenizer.eos_token_id]
    if model is not None and getattr(model, "generation_config", None) is not None:
        sources.append(model.generation_config.eos_token_id)
    if model_dir is not None and (Path(model_dir) / "generation_config.json").is_file():
        from transformers import GenerationConfig

        sources.append(GenerationConfig.from_pretrained(str(model_dir)).eos_token_id)
    for src in sources:
        if isinstance(src, int):
            ids.add(src)
        elif isinstance(src, (list, tuple)):
            ids.update(int(x) for x in src)
    return ids
