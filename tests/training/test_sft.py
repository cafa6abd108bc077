"""Stage 1 (SFT): LM loss on trace + <answer>, recommendation and distillation losses; a step lowers the loss."""

from __future__ import annotations

from typing import Any

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


def test_item_warmup_steps_train_the_item_tower_alone_then_everything(tiny_model_dir, dataset_dir, tmp_path):
    cfg = SFTConfig(
        batch_size=2, micro_batch=2, lr=5e-3, lora_r=8, lora_alpha=16, lora_top_layers=0, bf16=False, item_batch=64
    )
    trainer = SFTTrainer(
        SFTConfig(**{**cfg.to_dict(), "item_warmup_steps": 2}),
        tiny_model_dir,
        dataset_dir,
        tmp_path / "run",
        domain_templates("movies_evidence"),
        progress=False,
    )
    trainer.refresh_bank()
    batch = trainer.train_samples[:2]
    warm = [trainer.train_step(batch) for _ in range(2)]
    for record in warm:
        assert record["phase"] == "item_warmup" and record["item_loss"] > 0
        assert "lm_loss" not in record and "rec_loss" not in record  # no user forward, and no made-up zero
    joint = trainer.train_step(batch)
    assert joint["phase"] == "joint" and joint["lm_loss"] > 0 and joint["item_loss"] > 0


def test_fixed_sequences_run_the_top_layers_only_and_give_the_same_bank(tiny_model_dir, dataset_dir, tmp_path):
    from r2ec.encoder import encode

    cfg = SFTConfig(batch_size=2, micro_batch=2, lora_top_layers=1, bf16=False)
    trainer = SFTTrainer(
        cfg, tiny_model_dir, dataset_dir, tmp_path / "run", domain_templates("movies_evidence"), progress=False
    )
    assert trainer.prefix.enabled and trainer.prefix.start == 1
    bank = trainer.refresh_bank().numpy()
    assert "items" in trainer._states  # the catalog's frozen-layer output is cached
    full = encode(trainer.model, trainer.catalog_sequences(), trainer.pad)
    assert float((bank * full).sum(axis=1).min()) > 0.99999
    stats = trainer.train_step(trainer.train_samples[:2])
    assert stats["item_loss"] > 0 and stats["rec_loss"] > 0


def test_a_cached_pool_trains_the_top_layers_with_the_full_forwards_losses(tiny_model_dir, dataset_dir, tmp_path):
    """``train_top_layers`` freezes the adapter below the top; ``user_pool`` caches the pool's frozen layers, and
    a step on the cached path computes the same losses and gradients as the full forward."""
    templates = domain_templates("movies_evidence")

    def make(name: str, pool: int) -> SFTTrainer:
        cfg = SFTConfig(
            batch_size=2, micro_batch=2, lora_top_layers=0, train_top_layers=1, user_pool=pool, bf16=False, lr=0.0
        )
        return SFTTrainer(cfg, tiny_model_dir, dataset_dir, tmp_path / name, templates, progress=False)

    cached, full = make("cached", 6), make("full", 0)
    trainable = [n for n, p in cached.model.named_parameters() if p.requires_grad]
    assert trainable and all(".layers.1." in n for n in trainable)  # layer 0's LoRA is frozen
    assert cached.prefix.enabled and cached.prefix.start == 1 and len(cached.pool) == 6
    at = [cached.train_samples.index(s) for s in cached.pool[:2]]
    for t in (cached, full):
        t.refresh_bank()
    grads = []
    for t, batch in ((cached, cached.pool[:2]), (full, [full.train_samples[i] for i in at])):
        t.model.zero_grad()
        stats = t.micro_step(batch, 1.0)
        grads.append((stats, {n: p.grad.clone() for n, p in t.model.named_parameters() if p.requires_grad}))
    assert "train pool" in cached._states and "train pool" not in full._states
    (a, ga), (b, gb) = grads
    for key in ("lm_loss", "rec_loss", "kd_loss", "rank"):
        assert abs(a[key] - b[key]) < 1e-4 * max(1.0, abs(b[key])), key
    for name in ga:
        torch.testing.assert_close(ga[name], gb[name], rtol=1e-3, atol=1e-6)


def test_lm_positions_samples_that_many_completion_tokens(tiny_model_dir, dataset_dir, tmp_path):
    cfg = SFTConfig(batch_size=2, micro_batch=2, lora_top_layers=0, bf16=False, lm_positions=3, item_weight=0.0)
    trainer = SFTTrainer(
        cfg, tiny_model_dir, dataset_dir, tmp_path / "run", domain_templates("movies_evidence"), progress=False
    )
    trainer.refresh_bank()
    batch = trainer.train_samples[:2]
    seen: list[int] = []
    head = trainer.model.get_output_embeddings()
    handle = head.register_forward_hook(lambda _m, args, _out: seen.append(args[0].shape[0]))
    try:
        stats = trainer.micro_step(batch, 1.0)
    finally:
        handle.remove()
    assert seen == [3, 3] and stats["lm_loss"] > 0


def test_the_linear_teacher_weighs_the_candidates_by_their_scores(tiny_model_dir, dataset_dir, tmp_path):
    """``kd_teacher="linear"``: the teacher is the scores over their sum (the distribution whose optimum the item
    space probe ranks with), not the peaked softmax; its cross-entropy is minimal where the student matches it."""
    cfg = SFTConfig(batch_size=2, micro_batch=2, lora_top_layers=0, bf16=False, kd_teacher="linear", kd_candidates=8)
    trainer = SFTTrainer(
        cfg, tiny_model_dir, dataset_dir, tmp_path / "run", domain_templates("movies_evidence"), progress=False
    )
    rows = torch.tensor([0, 2, 3])
    scores = torch.tensor([3.0, 1.0, 0.5])
    teacher = scores / scores.sum()
    matched = torch.full((5,), -30.0)
    matched[rows] = teacher.log()
    linear = trainer.soft_target_ce(matched, rows, scores, linear=True)
    assert torch.isclose(linear, -(teacher * teacher.log()).sum())  # the teacher's entropy: the minimum
    peaked = torch.softmax(scores / scores.max() / cfg.kd_temperature, dim=0)
    assert peaked[0] > 0.99 > teacher[0]  # what the default teacher would have taught instead
    assert torch.isclose(trainer.soft_target_ce(matched, rows, scores), -(peaked * matched[rows]).sum())
    # And the step takes it: the distillation term a step reports is the linear teacher's.
    trainer.refresh_bank()
    record = trainer.train_step(trainer.train_samples[:2])
    assert record["kd_loss"] > 0


def test_the_distillation_temperature_sharpens_the_students_softmax_only(tiny_model_dir, dataset_dir, tmp_path):
    """``kd_tau``: the distillation compares the teacher with the softmax of the same cosines at its own temperature
    (half of tau: logits twice as large, masked items still out); 0 keeps tau, and the logits passed in (which the
    recommendation loss also reads) are not changed."""
    cfg = SFTConfig(batch_size=2, micro_batch=2, lora_top_layers=0, bf16=False, kd_teacher="linear", kd_candidates=8)
    trainer = SFTTrainer(
        cfg, tiny_model_dir, dataset_dir, tmp_path / "run", domain_templates("movies_evidence"), progress=False
    )
    samples = trainer.train_samples[:2]
    tables = [trainer.sample_evidence(s) for s in samples]
    logits = torch.randn(2, len(trainer.catalog)) * 5
    logits[0, 3] = float("-inf")
    kept = logits.clone()
    at_tau = trainer.distillation(samples, tables, logits * 2)
    trainer.cfg.kd_tau = cfg.tau / 2
    sharpened = trainer.distillation(samples, tables, logits)
    assert torch.equal(logits, kept)
    assert at_tau > 0 and torch.isclose(sharpened, at_tau)
    trainer.cfg.kd_tau = 0.0
    assert not torch.isclose(trainer.distillation(samples, tables, logits), at_tau)


def test_a_run_out_of_time_validates_its_last_step_and_keeps_the_best_adapter(
    tiny_model_dir, dataset_dir, tmp_path, monkeypatch
):
    """The frozen layers' caches are built before the clock starts; the step that runs out of time is validated
    (its record has valid metrics); OUT/adapter holds the best validated weights, the start's when none beat it."""
    import json
    import time as clock

    cfg = SFTConfig(
        batch_size=2, micro_batch=2, lora_top_layers=0, train_top_layers=1, user_pool=4, bf16=False,
        max_steps=50, eval_every=50, eval_samples=4, time_limit_s=6.0,
    )  # fmt: skip
    trainer = SFTTrainer(
        cfg, tiny_model_dir, dataset_dir, tmp_path / "run", domain_templates("movies_evidence"), progress=False
    )
    step, states = trainer.train_step, trainer.prefix.states

    def slow_step(batch: Any) -> Any:
        clock.sleep(4.0)
        return step(batch)

    def slow_states(*args: Any, **kwargs: Any) -> Any:  # each cache takes longer than the whole time limit
        clock.sleep(7.0)
        return states(*args, **kwargs)

    monkeypatch.setattr(trainer, "train_step", slow_step)
    monkeypatch.setattr(trainer.prefix, "states", slow_states)
    summary = trainer.train()
    # The caches came before the clock (three of them, 21 s against a limit of 6 s): steps ran, not none.
    assert {"items", "valid", "train pool"} <= set(trainer._states)
    assert summary["stop"] == "time_limit" and 1 <= summary["steps"] <= 2, summary
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    validated = [r["step"] for r in records if "valid_ndcg@10" in r]
    assert validated == [0, summary["steps"]]  # the start and the last step (eval_every is 50)
    assert summary["best_valid_ndcg@10"] == max(r["valid_ndcg@10"] for r in records if "valid_ndcg@10" in r)
    assert (tmp_path / "run" / "adapter" / "adapter_config.json").is_file()
