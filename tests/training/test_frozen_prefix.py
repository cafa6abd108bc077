"""Caching the frozen layers' output: the top layers alone give the full forward's vectors and gradients."""

from __future__ import annotations

import numpy as np
import torch
from peft import LoraConfig, get_peft_model

from r2ec.encoder import encode, forward_pooled, pad_id_of
from r2ec.models import load_causal_lm
from training.frozen_prefix import FrozenPrefix, first_trainable_layer


def _lora_on_top(model_dir, top: int = 1):
    base = load_causal_lm(model_dir, "float32", train=True)
    layers = base.config.num_hidden_layers
    cfg = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
        layers_to_transform=list(range(layers - top, layers)), init_lora_weights=False,
    )  # fmt: skip
    return get_peft_model(base, cfg)


def test_cached_prefix_gives_the_full_forward(tiny_model_dir, smollm_tokenizer):
    torch.manual_seed(0)
    model = _lora_on_top(tiny_model_dir)
    pad = pad_id_of(smollm_tokenizer)
    seqs = [smollm_tokenizer(t)["input_ids"] for t in ("a short one", "a rather longer sequence of words " * 5, "x")]
    prefix = FrozenPrefix(model, pad)
    assert prefix.start == first_trainable_layer(model) == 1 and prefix.enabled
    states = prefix.states(seqs)
    assert [len(s) for s in states] == [len(s) for s in seqs]
    np.testing.assert_allclose(prefix.encode(states), encode(model, seqs, pad), atol=1e-5)
    assert prefix.matches_full_forward(seqs)
    # Gradients through the cached path are the full forward's.
    grads = []
    for path in ("cached", "full"):
        model.zero_grad()
        pooled = prefix.forward_pooled(states) if path == "cached" else forward_pooled(model, seqs, pad)
        pooled.pow(2).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-6)
    # Every position's post-norm state too (what the LM loss reads).
    hidden, mask = prefix.forward_hidden(states)
    ids = torch.zeros_like(mask)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = torch.tensor(seq)
    with torch.no_grad():
        full = model.get_base_model().model(input_ids=ids, attention_mask=mask).last_hidden_state
    on = mask.bool()
    torch.testing.assert_close(hidden.detach()[on], full[on], rtol=1e-4, atol=1e-5)
    # The full model is intact afterwards.
    assert len(model.get_base_model().model.layers) == model.config.num_hidden_layers


def test_gemma2_is_cached_exactly_too(tmp_path, catalog):
    """Gemma-2 (soft-capping, sliding-window layers, scaled embeddings inside the embedding module)."""
    from tests.archs import build_tiny_arch

    model = _lora_on_top(build_tiny_arch(tmp_path / "gemma", catalog, "gemma2"))
    seqs = [[2, 10, 11, 12, 13], [2, 20, 21]]
    prefix = FrozenPrefix(model, 0)
    np.testing.assert_allclose(prefix.encode(prefix.states(seqs)), encode(model, seqs, 0), atol=1e-5)


def test_a_model_that_transforms_inputs_embeds_is_not_cached(tiny_model_dir, smollm_tokenizer):
    """Older Gemma code scaled inputs_embeds inside the model's forward; the check catches such a model."""
    model = _lora_on_top(tiny_model_dir)
    inner = model.get_base_model().model

    def scale(_module, args, kwargs):
        if kwargs.get("inputs_embeds") is not None:
            kwargs["inputs_embeds"] = kwargs["inputs_embeds"] * 3.0
        return args, kwargs

    inner.register_forward_pre_hook(scale, with_kwargs=True)
    seqs = [smollm_tokenizer(t)["input_ids"] for t in ("one sequence here", "and another, longer, one " * 3)]
    assert not FrozenPrefix(model, pad_id_of(smollm_tokenizer)).matches_full_forward(seqs)
