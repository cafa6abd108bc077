"""An adapter merged at export changes the item vectors exactly as applying it with peft does."""

import numpy as np
import torch

from model_export.bundle import load_bundle
from model_export.export import ExportConfig, run_export
from r2ec.chat import ChatRenderer
from r2ec.encoder import encode, pad_id_of
from r2ec.prompts import item_text
from r2ec.templates import domain_templates


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

    out = run_export(
        ExportConfig(
            base_model=tiny_model_dir,
            adapter=adapter_dir,
            catalog=dataset_dir,
            templates=domain_templates("movies"),
            domain="movies",
            out=tmp_path / "b",
            progress=False,
        )
    )
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
    assert bundle.manifest["model"]["adapter"] == str(adapter_dir)
