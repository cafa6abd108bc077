"""RecPO trainer (reference §5): sample reasoning groups, reward them by how well they rank the target, update
the LM head with a clipped policy-gradient loss and the recommendation head with an in-batch softmax loss.

Everything model-specific comes from the shared core: prompts and rendering (``r2ec.chat``), pooling
(``r2ec.pooling``), scoring (``r2ec.scoring``), rollouts through the serving engine interface
(``r2ec.engine.hf.TransformersEngine`` running the live LoRA model, so rollouts always use the current weights),
and validation through the offline evaluator.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from model_export.data.splits import Sample
from model_export.evaluate import evaluate
from r2ec import logs
from r2ec.encoder import encode, pad_right
from r2ec.engine.base import GenerationOptions
from r2ec.engine.hf import TransformersEngine
from r2ec.engine.settings import EngineSettings
from r2ec.exclusion import excluded_rows
from r2ec.index import IndexSpec, build_index
from r2ec.paths import public_path
from r2ec.pooling import backbone, last_token_pool
from r2ec.prompts import history_window, item_text
from r2ec.recommender import Recommender
from r2ec.scoring import Ranker
from training import persistence
from training.base import TrainerBase
from training.config import RecPOConfig
from training.losses import (
    best_trajectory_mask,
    fused_reward,
    group_advantages,
    ppo_token_loss,
    recommendation_loss,
)

log = logs.get(__name__)


@dataclass
class Trajectory:
    sample: Sample
    message: str
    reasoning: str
    ids: list[int]
    completion_start: int
    generated_answer: bool
    reward: float = 0.0
    r_c: float = 0.0
    r_d: float = 0.0


class RecPOTrainer(TrainerBase):
    cfg: RecPOConfig

    def setup(self, resume: bool) -> None:
        cfg = self.cfg
        if cfg.gradient_checkpointing:
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            self.model.enable_input_require_grads()
        if self.templates.evidence_candidates > 0:  # the prompts must be the ones serving shows
            self.load_evidence()
        self.stale = 0
        self.history: list[dict[str, Any]] = []
        self.item_vectors: np.ndarray | None = None
        state = self.resume_state(resume)
        if state is not None:
            self.stale = state["stale"]
        rollouts = EngineSettings(max_batch=64, batch_wait_ms=20.0, device=self.cfg.device)
        self.engine = TransformersEngine(self.model_dir, self.tokenizer, rollouts, model=self.model)

    # -- vectors -----------------------------------------------------------------------------------------------
    def item_sequences(self, items: Sequence[str]) -> list[list[int]]:
        t = self.templates
        return [self.renderer.item_sequence_ids(t.item_prompt, item_text(self.catalog.get(i), t)) for i in items]

    def refresh_items(self) -> np.ndarray:
        self.model.eval()
        seqs = self.item_sequences([it.item_id for it in self.catalog])
        bar = tqdm(total=len(seqs), desc="item vectors", unit="item", disable=not self.progress, leave=False)
        self.item_vectors = encode(self.model, seqs, self.pad, batch_size=16, progress=bar.update)
        bar.close()
        return self.item_vectors

    # -- rollouts ----------------------------------------------------------------------------------------------
    async def rollouts(self, samples: Sequence[Sample]) -> list[list[Trajectory]]:
        cfg = self.cfg
        self.model.eval()
        messages = [self.message(s) for s in samples]
        if cfg.no_reasoning:
            return [[self._trajectory(smp, msg, "", True)] for smp, msg in zip(samples, messages, strict=True)]
        jobs = []
        for ui, m in enumerate(messages):
            prompt = self.renderer.generation_prompt_ids(m)
            for g in range(cfg.group_size):
                options = GenerationOptions(
                    max_tokens=cfg.max_new_tokens,
                    temperature=cfg.temperature,
                    top_k=cfg.top_k,
                    seed=cfg.seed * 1_000_003 + self.step * 1009 + ui * 31 + g,
                )
                jobs.append(self.engine.generate(prompt, options, f"rollout-{self.step}-{ui}-{g}"))
        generations = await asyncio.gather(*jobs)
        groups = []
        for ui, (s, m) in enumerate(zip(samples, messages, strict=True)):
            gens = generations[ui * cfg.group_size : (ui + 1) * cfg.group_size]
            groups.append([self._trajectory(s, m, gen.text, gen.finish_reason == "answer") for gen in gens])
        return groups

    def _trajectory(self, sample: Sample, message: str, reasoning: str, generated_answer: bool) -> Trajectory:
        ids = self.renderer.user_sequence_ids(message, reasoning)
        start = len(self.renderer.generation_prompt_ids(message))
        return Trajectory(sample, message, reasoning, ids, start, generated_answer)

    # -- one update ----------------------------------------------------------------------------------------------
    def _forward(self, trajs: Sequence[Trajectory]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Post-norm last-token vectors (N, d), per-token log-probs and mask over completion tokens (N, T)."""
        ids, mask = pad_right([t.ids for t in trajs], self.pad, next(self.model.parameters()).device)
        hidden = backbone(self.model)(input_ids=ids, attention_mask=mask).last_hidden_state
        vectors = last_token_pool(hidden, mask)
        head = self.model.get_output_embeddings()
        answer_len = len(self.tokenizer(self.templates.answer, add_special_tokens=False)["input_ids"])
        rows, longest = [], 1
        for i, t in enumerate(trajs):
            end = len(t.ids) if t.generated_answer else len(t.ids) - answer_len  # appended <answer> is not sampled
            start = min(t.completion_start, end)
            if end <= start:
                rows.append((torch.zeros(0, device=ids.device), torch.zeros(0, device=ids.device)))
                continue
            logits = head(hidden[i, start - 1 : end - 1]).float()
            targets = ids[i, start:end]
            lp = torch.log_softmax(logits, dim=-1).gather(1, targets.unsqueeze(1)).squeeze(1)
            rows.append((lp, torch.ones_like(lp)))
            longest = max(longest, end - start)
        logp = torch.stack([torch.nn.functional.pad(lp, (0, longest - lp.shape[0])) for lp, _ in rows])
        tmask = torch.stack([torch.nn.functional.pad(m, (0, longest - m.shape[0])) for _, m in rows])
        return vectors, logp, tmask

    def train_step(self, samples: Sequence[Sample]) -> dict[str, float]:
        cfg = self.cfg
        assert self.item_vectors is not None
        started = time.perf_counter()
        groups = asyncio.run(self._rollouts_sync(samples))
        rollout_s = time.perf_counter() - started
        flat = [t for g in groups for t in g]
        self.model.train()
        vectors, logp, tmask = self._forward(flat)
        with torch.no_grad():
            unit = torch.nn.functional.normalize(vectors.detach().float(), dim=-1).cpu().numpy()
            for t, u in zip(flat, unit, strict=True):
                cos = self.item_vectors @ u
                exclude = excluded_rows(
                    self.catalog,
                    history_window(t.sample.history, self.templates),
                    t.sample.seen,
                    "seen" if cfg.protocol == "loo" else "window",
                )
                t.reward, t.r_c, t.r_d = fused_reward(
                    cos,
                    self.catalog.row_of[t.sample.target.item_id],
                    exclude,
                    cfg.tau,
                    cfg.beta,
                    cfg.ndcg_k,
                    cfg.reward,
                )
        g = len(groups[0])
        rewards = torch.tensor([[t.reward for t in grp] for grp in groups], dtype=torch.float32)
        adv = group_advantages(rewards, cfg.advantage)
        best = best_trajectory_mask(adv)
        best_idx = best.reshape(-1).nonzero().squeeze(1)
        weights = torch.ones(len(groups)) if cfg.no_reasoning else adv.reshape(-1)[best_idx].clamp(min=0.0)
        targets = [s.target.item_id for s in samples]
        # Behaviour log-probs: the policy that sampled the rollouts. The first update is on-policy (ratio 1);
        # each further epoch reuses the same rollouts, so its ratio moves and the clipping bites.
        old_logp = logp.detach()
        params = [p for p in self.model.parameters() if p.requires_grad]
        clip_fracs: list[float] = []
        for epoch in range(max(1, cfg.ppo_epochs)):
            if epoch > 0:
                vectors, logp, tmask = self._forward(flat)
            if cfg.no_reasoning:
                token_loss, clip_frac = torch.zeros((), device=vectors.device), torch.zeros(())
            else:
                token_loss, clip_frac = ppo_token_loss(
                    logp, old_logp, adv.reshape(-1).to(logp.device), tmask, cfg.eps_low, cfg.eps_high
                )
            clip_fracs.append(float(clip_frac))
            # Recommendation loss: the best trajectory per user against in-batch target items (encoded with grads).
            users = vectors[best_idx.to(vectors.device)]
            ids, mask = pad_right(self.item_sequences(targets), self.pad, vectors.device)
            items = last_token_pool(backbone(self.model)(input_ids=ids, attention_mask=mask).last_hidden_state, mask)
            rec_loss = recommendation_loss(users, items, targets, weights.to(users.device), cfg.tau)
            loss = token_loss + cfg.rec_weight * rec_loss
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            self.optimizer.step()
        clip_frac = torch.tensor(clip_fracs[-1])
        self.step += 1
        return {
            "step": self.step,
            "reward_mean": float(rewards.mean()),
            "reward_std": float(rewards.std()) if rewards.numel() > 1 else 0.0,
            "r_c_mean": float(np.mean([t.r_c for t in flat])),
            "r_d_mean": float(np.mean([t.r_d for t in flat])),
            "token_loss": float(token_loss.detach()),
            "rec_loss": float(rec_loss.detach()),
            "clip_frac": float(clip_frac),
            "grad_norm": float(grad_norm),
            "group_size": g,
            "reasoning_tokens_mean": float(tmask.sum(dim=1).float().mean()) if not cfg.no_reasoning else 0.0,
            "rollout_s": round(rollout_s, 2),
            "step_s": round(time.perf_counter() - started, 2),
        }

    async def _rollouts_sync(self, samples: Sequence[Sample]) -> list[list[Trajectory]]:
        if not self.engine.ready:
            await self.engine.start()
        return await self.rollouts(samples)

    # -- validation ------------------------------------------------------------------------------------------------
    def validate(self) -> dict[str, float]:
        vectors = self.refresh_items()
        ranker = Ranker(vectors, build_index(vectors, IndexSpec()), self.cfg.tau)
        self.model.eval()

        async def run() -> dict[str, Any]:
            if not self.engine.ready:
                await self.engine.start()
            rec = Recommender(self.engine, self.catalog, self.templates, ranker, self.tokenizer)
            summary, _ = await evaluate(
                rec,
                self.valid_samples,
                GenerationOptions(max_tokens=self.cfg.eval_max_new_tokens),
                reasoning=not self.cfg.no_reasoning,
                concurrency=32,
                progress=False,
            )
            return summary

        summary = asyncio.run(run())
        return {f"valid_{k}": v for k, v in summary["metrics"].items()}

    # -- persistence -----------------------------------------------------------------------------------------------
    def save_adapter(self, path: Path) -> None:
        persistence.save_adapter(self.model, path, self.cfg.to_dict())

    def checkpoint(self) -> None:
        persistence.save_checkpoint(
            self.model,
            self.optimizer,
            self.out,
            self.cfg.to_dict(),
            {"step": self.step, "best": self.best, "stale": self.stale},
        )

    def _log(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        persistence.append_metrics(self.out, record)
        log.info("train", extra=record)

    # -- loop ------------------------------------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        cfg = self.cfg
        persistence.write_run_config(
            self.out,
            {**cfg.to_dict(), "base_model": public_path(self.model_dir), "templates": self.templates.to_dict()},
        )
        started = time.monotonic()
        if self.step == 0:
            first = self.validate()
            self.best = first["valid_ndcg@10"]
            self._log({"step": 0, **first})
            self.save_adapter(self.out / "adapter")
        elif self.item_vectors is None:
            self.refresh_items()
        rng = random.Random(cfg.seed + self.step)
        bar = tqdm(total=cfg.max_steps, initial=self.step, desc="RecPO", unit="step", disable=not self.progress)
        stop_reason = "max_steps"
        while self.step < cfg.max_steps:
            if cfg.time_limit_s and time.monotonic() - started > cfg.time_limit_s:
                stop_reason = "time_limit"  # checked before a step too: a long validation may have used it up
                break
            batch = rng.sample(self.train_samples, min(cfg.batch_size, len(self.train_samples)))
            record = self.train_step(batch)
            if cfg.item_refresh_every and self.step % cfg.item_refresh_every == 0:
                self.refresh_items()
            out_of_time = bool(cfg.time_limit_s) and time.monotonic() - started > cfg.time_limit_s
            if self.step % cfg.eval_every == 0 or self.step == cfg.max_steps or out_of_time:
                record.update(self.validate())
                if record["valid_ndcg@10"] > self.best:
                    self.best, self.stale = record["valid_ndcg@10"], 0
                    self.save_adapter(self.out / "adapter")
                else:
                    self.stale += 1
            self._log(record)
            bar.update(1)
            bar.set_postfix(
                reward=f"{record['reward_mean']:.4f}", rec=f"{record['rec_loss']:.3f}", valid=f"{self.best:.4f}"
            )
            if self.step % cfg.save_every == 0:
                self.checkpoint()
            if self.stale >= cfg.patience:
                stop_reason = "early_stopping"
                break
            if out_of_time:
                stop_reason = "time_limit"
                break
        bar.close()
        self.checkpoint()
        asyncio.run(self.engine.close())
        return persistence.finish_run(
            self.out, self.step, self.best, stop_reason, time.monotonic() - started, stage="recpo"
        )
