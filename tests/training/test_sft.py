"""Stage 1 (SFT): LM loss on trace + <answer>, recommendation and distillation losses; a step lowers the loss."""

from __future__ import annotations

import torch

from r2ec.templates import domain_templates
from training.config import SFTConfig
from training.sft import SFTTrainer


def test_sft_steps_lower_the_loss_on_a_tiny_model(tiny_model_dir, dataset_dir, tmp_path):
    cfg = SFTConfig(batch_size=4, micro_batch=2, lr=5e-3, lora_r=8, lora_alpha=16, lora_top_layers=0, bf16=False)
    trainer = SFTTrainer(
        cfg, tiny_model_dir, dataset_dir, tmp_path / "run", domain_templates("movies_evidence"), progress=False
    )
    trainer.refresh_bank()
    batch = trainer.train_samples[:4]
    assert all(trainer.trace(s) for s in batch)  # the tiny world has collaborative evidence
    first = trainer.train_step(batch)
    for _ in range(5):
        last = trainer.train_step(batch)
    assert last["lm_loss"] < first["lm_loss"]
    assert (
        last["lm_loss"] + last["rec_loss"] + last["kd_loss"] < first["lm_loss"] + first["rec_loss"] + first["kd_loss"]
    )
    trainer.checkpoint()
    resumed = SFTTrainer(
        cfg,
        tiny_model_dir,
        dataset_dir,
        tmp_path / "run",
        domain_templates("movies_evidence"),
        resume=True,
        progress=False,
    )
    assert resumed.step == trainer.step == 6
    a = dict(trainer.model.named_parameters())
    b = dict(resumed.model.named_parameters())
    name = next(n for n in a if "lora_A" in n)
    assert torch.allclose(a[name], b[name])


def test_the_item_tower_learns_the_collaborative_neighbourhoods(tiny_model_dir, dataset_dir, tmp_path):
    """The item loss pulls each item toward its co-interaction neighbours in the bank: it falls on a fixed set."""
    cfg = SFTConfig(
        batch_size=2, micro_batch=2, lr=5e-3, lora_r=8, lora_alpha=16, lora_top_layers=0, bf16=False, item_batch=64
    )
    trainer = SFTTrainer(
        cfg, tiny_model_dir, dataset_dir, tmp_path / "run", domain_templates("movies_evidence"), progress=False
    )
    trainer.refresh_bank()
    assert 0 < len(trainer.item_rows) <= cfg.item_batch  # every item with neighbours, each step
    batch = trainer.train_samples[:2]
    losses = [trainer.train_step(batch)["item_loss"] for _ in range(6)]
    assert losses[-1] < losses[0], losses
    # Off means off: no item forward, no term.
    off = SFTTrainer(
        SFTConfig(batch_size=2, micro_batch=2, lora_top_layers=0, bf16=False, item_weight=0.0),
        tiny_model_dir,
        dataset_dir,
        tmp_path / "off",
        domain_templates("movies_evidence"),
        progress=False,
    )
    off.refresh_bank()
    assert off.train_step(batch)["item_loss"] == 0.0


def test_fixed_sequences_run_the_top_layers_only_and_give_the_same_bank(tiny_model_dir, dataset_dir, tmp_path):
    from r2ec.encoder import encode

    cfg = SFTConfig(batch_size=2, micro_batch=2, lora_top_layers=1, bf16=False)
    trainer = SFTTrainer(
        cfg, tiny_model_dir, dataset_dir, tmp_path / "run", domain_templates("movies_evidence"), progress=False
    )
    assert trainer.prefix.enabled and trainer.prefix.start == 1
    bank = trainer.refresh_bank().numpy()
    assert "items" in trainer._states  # the catalog's frozen-layer output is cached
    full = encode(trainer.model, trainer.item_sequences(range(len(trainer.catalog))), trainer.pad)
    assert float((bank * full).sum(axis=1).min()) > 0.99999
    stats = trainer.train_step(trainer.train_samples[:2])
    assert stats["item_loss"] > 0 and stats["rec_loss"] > 0
