"""An adapter merged at export changes the item vectors exactly as applying it with peft does."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from model_export.adapter import AdapterError, check_adapter
from model_export.bundle import load_bundle
from r2ec.chat import ChatRenderer
from r2ec.encoder import encode, pad_id_of
from r2ec.paths import public_path
from r2ec.prompts import item_text
from tests.archs import AUTHORS_TARGETS, authors_adapter, build_tiny_arch
from tests.helpers import export_tiny


def test_adapter_merge_matches_peft(tmp_path, tiny_model_dir, dataset_dir, smollm_tokenizer, catalog):
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    # The authors' adapter shape: r=4, alpha=128, all attention and MLP projections; non-zero B so it matters.
    cfg = LoraConfig(
        r=4,
        lora_alpha=128,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        init_lora_weights=False,
    )
    peft_model = get_peft_model(base, cfg)
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.002)
    adapter_dir = tmp_path / "adapter"
    peft_model.save_pretrained(str(adapter_dir))
    assert (adapter_dir / "adapter_model.safetensors").is_file()

    out = export_tiny(tiny_model_dir, dataset_dir, tmp_path / "b", adapter=adapter_dir)
    bundle = load_bundle(out)
    templates = bundle.templates
    renderer = ChatRenderer(smollm_tokenizer, templates)
    seqs = [renderer.item_sequence_ids(templates.item_prompt, item_text(it, templates)) for it in catalog.items[:8]]
    fresh = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    applied = PeftModel.from_pretrained(fresh, str(adapter_dir)).eval()  # unmerged: LoRA applied at run time
    with_peft = encode(applied, seqs, pad_id_of(smollm_tokenizer))
    np.testing.assert_allclose(bundle.vectors[:8], with_peft, atol=1e-4)
    plain = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32).eval()
    without = encode(plain, seqs, pad_id_of(smollm_tokenizer))
    assert np.abs(bundle.vectors[:8] - without).max() > 1e-3  # and the adapter really changed them
    assert bundle.manifest["model"]["adapter"] == adapter_dir.name  # part of the bundle version: the name only
    source = bundle.manifest["created_by"]["adapter"]  # provenance: where it came from, never an absolute path
    assert source == public_path(adapter_dir, Path.cwd()) and not source.startswith("/")


# -- adapters in the authors' layout that do not fit their base are refused at export, with the reason --------


@pytest.fixture(scope="module")
def arch_models(tmp_path_factory, catalog) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("archs")
    return {arch: build_tiny_arch(root / arch, catalog, arch) for arch in ("gemma2", "qwen2")}


def _export(base: Path, adapter: Path, dataset_dir: Path, out: Path) -> Path:
    return export_tiny(base, dataset_dir, out, adapter=adapter)


def test_an_adapter_for_another_architecture_is_refused(arch_models, dataset_dir, tmp_path):
    qwen_adapter = authors_adapter(arch_models["qwen2"], tmp_path / "qwen-adapter")
    with pytest.raises(AdapterError, match=r"does not fit the base model: .*mlp\..* in Gemma2ForCausalLM"):
        _export(arch_models["gemma2"], qwen_adapter, dataset_dir, tmp_path / "b")
    assert not (tmp_path / "b").exists()  # refused before anything was written


def test_an_adapter_whose_config_names_another_rank_is_refused(arch_models, dataset_dir, tmp_path):
    adapter = authors_adapter(arch_models["gemma2"], tmp_path / "adapter")
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["r"] = 8  # the weights are rank 4
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(AdapterError, match=r"has rank 4 but .* says r=8"):
        _export(arch_models["gemma2"], adapter, dataset_dir, tmp_path / "b")


def test_target_modules_the_base_does_not_have_are_refused(arch_models, dataset_dir, tmp_path):
    adapter = authors_adapter(arch_models["gemma2"], tmp_path / "adapter")
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["target_modules"] = [*config["target_modules"], "c_attn"]  # GPT-2's fused projection
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(AdapterError, match=r"target module\(s\) c_attn .* do not exist in the base model"):
        check_adapter(arch_models["gemma2"], adapter)


def test_target_modules_without_weights_are_refused(arch_models, tmp_path):
    adapter = authors_adapter(arch_models["qwen2"], tmp_path / "adapter", targets=["q_proj", "v_proj"])
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["target_modules"] = ["q_proj", "v_proj", "o_proj"]
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(AdapterError, match=r"targets o_proj but .* has no weights for them"):
        check_adapter(arch_models["qwen2"], adapter)


def test_weights_outside_the_target_modules_are_refused(arch_models, tmp_path):
    adapter = authors_adapter(arch_models["qwen2"], tmp_path / "adapter")
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["target_modules"] = ["q_proj", "k_proj", "v_proj", "o_proj"]  # the MLP weights are still there
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(AdapterError, match=r"mlp\.\w+_proj has weights but is not among the target modules"):
        check_adapter(arch_models["qwen2"], adapter)


def test_the_authors_layout_is_described(arch_models, tmp_path):
    info = check_adapter(arch_models["gemma2"], authors_adapter(arch_models["gemma2"], tmp_path / "adapter"))
    assert (info.rank, info.alpha, info.modules) == (4, 128.0, 14)
    assert set(info.target_modules) == set(AUTHORS_TARGETS)
    assert info.to_dict()["trained_on"] == "google/gemma-2-2b-it"
