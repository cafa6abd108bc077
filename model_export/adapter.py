"""PEFT LoRA adapters at export: checked against the base model before anything is merged, then merged.

The authors publish adapters as peft's ``adapter_config.json`` + ``adapter_model.safetensors`` (r 4, alpha 128,
the seven attention and MLP projections of Gemma-2-2b-it or Qwen2.5-3B-Instruct). peft itself loads a mismatched
adapter with a shape error deep in ``load_state_dict``, or silently skips modules that do not exist; both make a
bundle that is not the checkpoint its user meant. ``check_adapter`` reads only the config, the tensor headers and
the base model's module shapes (built on the meta device: no weights are loaded) and refuses with a message that
names the module, the shapes and the likely cause.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r2ec.models import load_causal_lm

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<side>[AB])(?:\.default)?\.weight$")


class AdapterError(ValueError):
    """An adapter that does not fit the base model it is exported with."""


@dataclass(frozen=True)
class AdapterInfo:
    rank: int
    alpha: float
    target_modules: tuple[str, ...]
    modules: int  # adapted modules found in the weights
    trained_on: str | None  # base_model_name_or_path the adapter names (a hub id or the trainer's path)

    def to_dict(self) -> dict[str, Any]:
        base = None if self.trained_on is None else Path(self.trained_on).name
        return {
            "rank": self.rank,
            "alpha": self.alpha,
            "target_modules": list(self.target_modules),
            "modules": self.modules,
            "trained_on": base if self.trained_on and Path(self.trained_on).is_absolute() else self.trained_on,
        }


def _linear_shapes(base: Path) -> tuple[str, dict[str, tuple[int, int]]]:
    """The base model's architecture and ``module path -> (in_features, out_features)`` of its linear layers."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(base))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    shapes = {
        name: (int(m.in_features), int(m.out_features))
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear)
    }
    return (config.architectures or [type(model).__name__])[0], shapes


def _targets(config: dict[str, Any]) -> tuple[str, ...]:
    raw = config.get("target_modules")
    if isinstance(raw, str):  # a regex in peft's config
        return (raw,)
    return tuple(sorted(str(t) for t in raw or ()))


def _matches(target: str, module: str, regex: bool) -> bool:
    if regex:
        return re.fullmatch(target, module) is not None
    return module == target or module.endswith("." + target)


def check_adapter(base: Path, adapter: Path) -> AdapterInfo:
    """Refuse an adapter whose type, rank, target modules or shapes do not fit ``base``; describe it otherwise."""
    from safetensors import safe_open

    config_path, weights_path = adapter / CONFIG_FILE, adapter / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise AdapterError(f"{adapter} is not a PEFT adapter directory (no {path.name})")
    config = json.loads(config_path.read_text())
    if str(config.get("peft_type", "")).upper() != "LORA":
        raise AdapterError(f"{config_path}: peft_type is {config.get('peft_type')!r}; only LoRA adapters are exported")
    rank, alpha = int(config.get("r", 0)), float(config.get("lora_alpha", 0))
    if rank <= 0:
        raise AdapterError(f"{config_path}: r must be a positive rank, not {config.get('r')!r}")
    rank_pattern: dict[str, int] = {str(k): int(v) for k, v in (config.get("rank_pattern") or {}).items()}
    targets = _targets(config)
    regex = isinstance(config.get("target_modules"), str)
    if not targets:
        raise AdapterError(f"{config_path}: no target_modules")
    architecture, shapes = _linear_shapes(base)
    suffixes = sorted({name.rsplit(".", 1)[-1] for name in shapes})

    missing = [t for t in targets if not any(_matches(t, name, regex) for name in shapes)]
    if missing:
        raise AdapterError(
            f"target module(s) {', '.join(missing)} of {config_path} do not exist in the base model "
            f"({architecture}; its linear layers: {', '.join(suffixes)}): the adapter was made for another "
            "architecture"
        )
    tensors: dict[str, dict[str, tuple[int, ...]]] = {}
    with safe_open(str(weights_path), framework="pt") as f:
        for key in f.keys():  # noqa: SIM118 (safe_open has keys(), not __iter__)
            m = _KEY.match(key)
            if m is None:
                continue
            tensors.setdefault(m["module"], {})[m["side"]] = tuple(f.get_slice(key).get_shape())
    if not tensors:
        raise AdapterError(f"{weights_path} holds no LoRA weights (no *.lora_A.weight / *.lora_B.weight)")
    for module, sides in sorted(tensors.items()):
        if module not in shapes:
            raise AdapterError(
                f"{weights_path}: module {module} does not exist in the base model ({architecture}): "
                "the adapter was trained on a model with other layers"
            )
        if not any(_matches(t, module, regex) for t in targets):
            raise AdapterError(
                f"{weights_path}: module {module} has weights but is not among the target modules "
                f"{', '.join(targets)} of {config_path}"
            )
        want = next((r for pattern, r in rank_pattern.items() if _matches(pattern, module, True)), rank)
        if set(sides) != {"A", "B"}:
            raise AdapterError(f"{weights_path}: module {module} has lora_{''.join(sides)} only")
        a, b = sides["A"], sides["B"]
        in_f, out_f = shapes[module]
        if a[0] != want or b[1] != want:
            raise AdapterError(
                f"{weights_path}: module {module} has rank {a[0]} but {config_path} says r={want}: "
                "the config does not describe these weights"
            )
        if a[1] != in_f or b[0] != out_f:
            raise AdapterError(
                f"adapter does not fit the base model: {module} is {in_f} -> {out_f} in {architecture}, "
                f"the adapter expects {a[1]} -> {b[0]} (was it trained on another base model?)"
            )
    uncovered = [t for t in targets if not regex and not any(_matches(t, m, False) for m in tensors)]
    if uncovered:
        raise AdapterError(f"{config_path} targets {', '.join(uncovered)} but {weights_path} has no weights for them")
    return AdapterInfo(rank, alpha, targets, len(tensors), config.get("base_model_name_or_path"))


def merge_adapter(base: Path, adapter: Path, dst: Path) -> None:
    """Apply a PEFT LoRA adapter that ``check_adapter`` accepted to ``base``; save the merged weights (and the
    tokenizer) to ``dst``."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    config = json.loads((base / "config.json").read_text())
    dtype = config.get("torch_dtype") or config.get("dtype") or "float32"
    model = load_causal_lm(base, str(dtype))
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    merged.save_pretrained(str(dst))
    tokenizer_src = adapter if (adapter / "tokenizer_config.json").is_file() else base
    AutoTokenizer.from_pretrained(str(tokenizer_src)).save_pretrained(str(dst))
    for extra in ("generation_config.json",):
        if (base / extra).is_file() and not (dst / extra).is_file():
            shutil.copy2(base / extra, dst / extra)
