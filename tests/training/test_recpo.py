"""End-to-end RecPO on a tiny model and a synthetic catalog with a learnable rule (fails if gradients are wrong)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from model_export.bundle import load_bundle
from model_export.data.format import Dataset, Interaction
from model_export.export import ExportConfig, run_export
from r2ec.catalog import Catalog, Item
from r2ec.paths import public_path
from r2ec.templates import domain_templates
from training.config import RecPOConfig
from training.recpo import RecPOTrainer

CLUSTERS = ["Ghost", "Laser", "Cowboy", "Piano"]


def clustered_dataset(seed: int = 0) -> Dataset:
    """Users stay inside one cluster of titles: the next item shares its cluster word with the history."""
    rng = random.Random(seed)
    items = [Item(str(c * 10 + i), f"{word} {i}", genres=[word]) for c, word in enumerate(CLUSTERS) for i in range(6)]
    interactions = []
    for u in range(48):
        c = u % len(CLUSTERS)
        pool = [str(c * 10 + i) for i in range(6)]
        t0 = 1_000_000.0 + u * 10_000
        for j, item in enumerate(rng.sample(pool, 4)):
            interactions.append(Interaction(f"u{u}", item, 4.0, t0 + j * 600))
    return Dataset("clusters", "movies", Catalog(items), interactions)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("clusters")
    clustered_dataset().save(out)
    return out


def _cfg(**kw) -> RecPOConfig:
    base: dict[str, Any] = dict(
        group_size=2,
        batch_size=8,
        max_steps=24,
        max_new_tokens=3,
        lr=3e-3,
        lora_r=8,
        lora_alpha=16,
        eval_every=6,
        eval_samples=24,
        eval_max_new_tokens=2,
        patience=10,
        gradient_checkpointing=False,
        temperature=1.0,
        tau=0.1,
    )
    base.update(kw)
    return RecPOConfig(**base)


def _templates():
    return domain_templates("movies").with_overrides(window_size=3, item_text="Title: {title}")


def test_training_raises_reward_and_valid_ndcg(tiny_model_dir, data_dir, tmp_path):
    trainer = RecPOTrainer(_cfg(), tiny_model_dir, data_dir, tmp_path / "run", _templates(), progress=False)
    summary = trainer.train()
    history = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    start_ndcg = history[0]["valid_ndcg@10"]
    rewards = [h["reward_mean"] for h in history if "reward_mean" in h]
    assert summary["best_valid_ndcg@10"] > start_ndcg + 0.05, history
    assert sum(rewards[-6:]) / 6 > sum(rewards[:6]) / 6 + 0.03, rewards
    assert all(0 <= h["clip_frac"] <= 1 for h in history if "clip_frac" in h)
    assert (tmp_path / "run" / "adapter" / "adapter_config.json").is_file()
    assert json.loads((tmp_path / "run" / "adapter" / "training_config.json").read_text())["group_size"] == 2
    # The run's config names the base model without this machine's directories (it gets copied into shipped assets).
    assert json.loads((tmp_path / "run" / "training_config.json").read_text())["base_model"] == public_path(
        tiny_model_dir
    )
    assert not json.loads((tmp_path / "run" / "training_config.json").read_text())["base_model"].startswith("/")


def test_no_reasoning_ablation_trains_and_resume_continues(tiny_model_dir, data_dir, tmp_path):
    run = tmp_path / "nr"
    first = RecPOTrainer(
        _cfg(no_reasoning=True, max_steps=4, eval_every=4), tiny_model_dir, data_dir, run, _templates(), progress=False
    ).train()
    assert first["steps"] == 4
    again = RecPOTrainer(
        _cfg(no_reasoning=True, max_steps=6, eval_every=4),
        tiny_model_dir,
        data_dir,
        run,
        _templates(),
        resume=True,
        progress=False,
    )
    assert again.step == 4
    assert again.train()["steps"] == 6


def test_trained_adapter_exports_to_a_bundle_that_serves(tiny_model_dir, data_dir, tmp_path):
    run = tmp_path / "run"
    RecPOTrainer(_cfg(max_steps=2, eval_every=2), tiny_model_dir, data_dir, run, _templates(), progress=False).train()
    bundle = run_export(
        ExportConfig(
            base_model=tiny_model_dir,
            adapter=run / "adapter",
            catalog=data_dir,
            templates=_templates(),
            domain="movies",
            out=tmp_path / "bundle",
            progress=False,
        )
    )
    b = load_bundle(bundle)
    assert b.manifest["model"]["adapter"].endswith("adapter")
    import httpx

    from service.app import create_app
    from service.settings import Settings
    from tests.helpers import running

    with running(create_app(Settings(bundle=bundle, threads=2))) as srv:
        r = httpx.post(
            srv.url + "/v1/recommend",
            timeout=60,
            json={"history": [{"item_id": "0"}, {"item_id": "1"}], "k": 3, "max_reasoning_tokens": 3},
        )
        assert r.status_code == 200 and len(r.json()["items"]) == 3


def test_time_limit_stops_before_another_step(tiny_model_dir, data_dir, tmp_path):
    cfg = _cfg(no_reasoning=True, max_steps=50, eval_every=50, time_limit_s=0.001)
    summary = RecPOTrainer(cfg, tiny_model_dir, data_dir, tmp_path / "t", _templates(), progress=False).train()
    assert summary["stop"] == "time_limit" and summary["steps"] == 0


def test_ppo_epochs_move_the_ratio_so_clipping_bites(tiny_model_dir, data_dir, tmp_path):
    """With ppo_epochs > 1 the later epochs reuse the rollouts: the ratio leaves 1 and tokens get clipped."""
    cfg = _cfg(max_steps=1, ppo_epochs=4, lr=5e-2, eps_low=0.01, eps_high=0.01, max_new_tokens=4)
    trainer = RecPOTrainer(cfg, tiny_model_dir, data_dir, tmp_path / "run", _templates(), progress=False)
    trainer.refresh_items()
    record = trainer.train_step(trainer.train_samples[:8])
    assert record["clip_frac"] > 0, record  # measured on the last epoch, against the behaviour policy
    one = RecPOTrainer(
        _cfg(max_steps=1, ppo_epochs=1), tiny_model_dir, data_dir, tmp_path / "one", _templates(), progress=False
    )
    one.refresh_items()
    assert one.train_step(one.train_samples[:8])["clip_frac"] == 0.0  # on-policy: ratio exactly 1
