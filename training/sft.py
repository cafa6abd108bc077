"""Stage 1, SFT warm start (issue: interaction-of-thought): teacher-forced LM loss on trace + ``<answer>``, plus a
recommendation loss on the post-norm hidden state after ``<answer>``.

The recommendation loss is a softmax of cos / tau over the whole catalog: the targets of the micro-batch are
encoded live (with gradients, the item tower), every other item comes from a bank of item vectors that the
model itself encoded a few steps ago (refreshed every ``bank_refresh_every`` steps). The user's earlier items
are masked as at evaluation (``r2ec.exclusion``). Prompts, rendering, pooling and exclusion are the shared core's.

Sized for CPUs: bfloat16 weights, LoRA on the top layers only (the lower layers need no backward pass),
micro-batches with gradient accumulation so peak memory stays flat, and a checkpoint every few steps so a long
run spans several sittings (``--resume``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from model_export.data.splits import Sample
from r2ec import logs
from r2ec.encoder import encode, pad_right
from r2ec.evidence import Transitions
from r2ec.exclusion import excluded_rows
from r2ec.metrics import summarize
from r2ec.paths import public_path
from r2ec.pooling import backbone, last_token_pool
from r2ec.prompts import history_window, item_text
from training import persistence
from training.base import TrainerBase
from training.config import SFTConfig
from training.frozen_prefix import FrozenPrefix
from training.traces import render_trace

log = logs.get(__name__)


class SFTTrainer(TrainerBase):
    cfg: SFTConfig

    def setup(self, resume: bool) -> None:
        self.rng = random.Random(self.cfg.seed + 1)
        self.evidence: Transitions = self.load_evidence()  # the teacher, even where prompts show no evidence
        self.bank: torch.Tensor | None = None
        self.resume_state(resume)
        self.item_rows = [r for r in range(len(self.catalog)) if self.evidence.neighbors[r, 0] >= 0]
        # Fixed sequences (the catalog, the validation samples) run the frozen lower layers once.
        self.prefix = FrozenPrefix(self.model, self.pad)
        self._states: dict[str, list[torch.Tensor]] = {}
        self._prefix_checked = False
        # A fixed pool of training samples whose user sequences (prompt + trace + <answer>) are fixed as well:
        # with few trainable layers, caching their frozen layers' output makes a step several times cheaper.
        self.pool: list[Sample] = []
        self._pool_at: dict[int, int] = {}
        self._pool_seqs: list[tuple[list[int], int]] = []
        self._catalog_seqs: list[list[int]] = []
        self._valid_seqs: list[list[int]] = []
        if self.cfg.user_pool > 0:
            n = min(self.cfg.user_pool, len(self.train_samples))
            self.pool = random.Random(self.cfg.seed + 2).sample(self.train_samples, n)
            self._pool_at = {id(s): i for i, s in enumerate(self.pool)}

    # -- sequences -------------------------------------------------------------------------------------------------
    def sample_evidence(self, s: Sample) -> Transitions:
        table = super().sample_evidence(s)
        assert table is not None  # loaded in __init__
        return table

    def trace(self, s: Sample, evidence: Transitions | None = None) -> str:
        table = self.sample_evidence(s) if evidence is None else evidence
        return render_trace(s.history, self.catalog, self.templates, table, self.shown_exclusions(s))

    def user_sequence(self, s: Sample, evidence: Transitions | None = None) -> tuple[list[int], int]:
        """prompt + trace + ``<answer>`` ids and where the completion (trace + ``<answer>``) starts."""
        table = self.sample_evidence(s) if evidence is None else evidence
        msg = self.message(s, table)
        ids = self.renderer.user_sequence_ids(msg, self.trace(s, table))
        return ids, len(self.renderer.generation_prompt_ids(msg))

    def catalog_sequences(self) -> list[list[int]]:
        """Every catalog item's sequence in row order; fixed for a run, so rendered once."""
        if not self._catalog_seqs:
            t = self.templates
            self._catalog_seqs = [
                self.renderer.item_sequence_ids(t.item_prompt, item_text(it, t)) for it in self.catalog.items
            ]
        return self._catalog_seqs

    def valid_sequences(self) -> list[list[int]]:
        """The validation samples' user sequences (prompt + trace + ``<answer>``); fixed for a run, rendered once."""
        if not self._valid_seqs:
            self._valid_seqs = [self.user_sequence(s)[0] for s in self.valid_samples]
        return self._valid_seqs

    def fixed_states(self, name: str, sequences: Sequence[Sequence[int]]) -> list[torch.Tensor] | None:
        """The frozen layers' output for a fixed set of sequences (the catalog, the validation samples), computed
        once; None where the cached path cannot be used (every layer trains, or it does not match the model)."""
        if not self.prefix.enabled:
            return None
        if name not in self._states:
            if not self._prefix_checked:
                self._prefix_checked = True
                if not self.prefix.matches_full_forward(list(sequences[:4])):
                    log.warning("frozen-prefix cache does not match the full forward; not used")
                    self.prefix.enabled = False
                    return None
            log.info(
                "caching frozen layers", extra={"set": name, "sequences": len(sequences), "below": self.prefix.start}
            )
            bar = tqdm(total=len(sequences), desc=f"frozen layers: {name}", unit="seq", disable=not self.progress)
            self._states[name] = self.prefix.states(sequences, progress=bar.update)
            bar.close()
        return self._states[name]

    def pooled_states(self, samples: Sequence[Sample]) -> tuple[list[torch.Tensor], list[tuple[list[int], int]]] | None:
        """Cached frozen-layer states and (ids, completion start) of ``samples`` when all are in the pool."""
        if not self.pool or any(id(s) not in self._pool_at for s in samples):
            return None
        if not self._pool_seqs:
            self._pool_seqs = [self.user_sequence(s) for s in self.pool]
        states = self.fixed_states("train pool", [q for q, _ in self._pool_seqs])
        if states is None:
            return None
        at = [self._pool_at[id(s)] for s in samples]
        return [states[i] for i in at], [self._pool_seqs[i] for i in at]

    def refresh_bank(self) -> torch.Tensor:
        self.model.eval()
        seqs = self.catalog_sequences()
        states = self.fixed_states("items", seqs)
        if states is not None:
            vectors = self.prefix.encode(states)
        else:
            bar = tqdm(total=len(seqs), desc="item bank", unit="item", disable=not self.progress, leave=False)
            vectors = encode(self.model, seqs, self.pad, batch_size=32, progress=bar.update)
            bar.close()
        self.bank = torch.from_numpy(vectors)
        return self.bank

    def masked(self, s: Sample) -> list[int]:
        mask = "seen" if self.cfg.protocol == "loo" else "window"
        return excluded_rows(self.catalog, history_window(s.history, self.templates), s.seen, mask)  # type: ignore[arg-type]

    # -- losses ----------------------------------------------------------------------------------------------------
    def micro_step(self, samples: Sequence[Sample], scale: float) -> dict[str, float]:
        assert self.bank is not None
        device = next(self.model.parameters()).device
        tables = [self.sample_evidence(s) for s in samples]
        cached = self.pooled_states(samples)
        if cached is not None:
            seqs = cached[1]
            ids, _ = pad_right([q for q, _ in seqs], self.pad, device)
            hidden, mask = self.prefix.forward_hidden(cached[0])
        else:
            seqs = [self.user_sequence(s, t) for s, t in zip(samples, tables, strict=True)]
            ids, mask = pad_right([q for q, _ in seqs], self.pad, device)
            hidden = backbone(self.model)(input_ids=ids, attention_mask=mask).last_hidden_state
        users = F.normalize(last_token_pool(hidden, mask).float(), dim=-1)
        # LM loss over trace + <answer> (the tokens generation must produce), mean over tokens (or over
        # ``lm_positions`` random ones of them per sample: the same expectation).
        head = self.model.get_output_embeddings()
        lm_terms, n_tok = [], 0
        for i, (q, start) in enumerate(seqs):
            end = len(q)
            if end <= start:
                continue
            positions = torch.arange(start, end, device=device)
            if 0 < self.cfg.lm_positions < len(positions):
                positions = positions[sorted(self.rng.sample(range(len(positions)), self.cfg.lm_positions))]
            logits = head(hidden[i, positions - 1]).float()
            lm_terms.append(F.cross_entropy(logits, ids[i, positions], reduction="sum"))
            n_tok += len(positions)
        lm_loss = torch.stack(lm_terms).sum() / max(n_tok, 1) if lm_terms else torch.zeros((), device=device)
        # Recommendation loss over the whole catalog: live vectors for this micro-batch's targets, bank for the rest.
        targets = [self.catalog.row_of[s.target.item_id] for s in samples]
        negatives = [r for r in self.rng.sample(range(len(self.catalog)), self.cfg.live_negatives) if r not in targets]
        live_rows = list(dict.fromkeys(targets + negatives))
        live, item_tokens = self.live_item_vectors(live_rows)
        # Two fair comparisons, never live against stale: (a) the user against the whole bank, the target's bank
        # vector included (trains the user side over every negative); (b) the user against the live vectors of
        # the targets and random negatives (trains the item tower too).
        cols = torch.tensor(targets, device=device)
        logits = users @ self.bank.to(device).T / self.cfg.tau
        for i, s in enumerate(samples):
            banned = [r for r in self.masked(s) if r != targets[i]]
            if banned:
                logits[i, banned] = float("-inf")
        live_logits = users @ live.T / self.cfg.tau
        same = torch.tensor([[r == t for r in live_rows] for t in targets], device=device)
        own = torch.tensor([live_rows.index(t) for t in targets], device=device)
        live_logits = live_logits.masked_fill(
            same & (torch.arange(len(live_rows), device=device) != own[:, None]), float("-inf")
        )
        rec_loss = F.cross_entropy(logits, cols) + F.cross_entropy(live_logits, own)
        kd_loss = self.distillation(samples, tables, logits)
        loss = self.cfg.lm_weight * lm_loss + self.cfg.rec_weight * rec_loss + self.cfg.kd_weight * kd_loss
        (loss * scale).backward()
        with torch.no_grad():
            ranks = (logits > logits.gather(1, cols.unsqueeze(1))).sum(dim=1).float()
        return {
            "lm_loss": float(lm_loss.detach()),
            "rec_loss": float(rec_loss.detach()),
            "kd_loss": float(kd_loss.detach()),
            "rank": float(ranks.mean()),
            "tokens": float(mask.sum()) + item_tokens,
        }

    def distillation(
        self, samples: Sequence[Sample], tables: Sequence[Transitions], logits: torch.Tensor
    ) -> torch.Tensor:
        """Cross-entropy of the user's softmax over the catalog (``logits`` at ``tau``, rescaled to ``kd_tau``)
        against the teacher's distribution (the sample's own evidence table: its future never teaches it)."""
        if self.cfg.kd_weight <= 0:
            return torch.zeros((), device=logits.device)
        if self.cfg.kd_tau > 0:  # the same cosines at the distillation's own temperature (-inf stays -inf)
            logits = logits * (self.cfg.tau / self.cfg.kd_tau)
        terms = []
        linear = self.cfg.kd_teacher == "linear"
        for i, (s, table) in enumerate(zip(samples, tables, strict=True)):
            window = [self.catalog.row_of[e.item_id] for e in history_window(s.history, self.templates)]
            found = table.candidates(window, self.masked(s), n=self.cfg.kd_candidates)
            if not found:
                continue
            rows = torch.tensor([c.row for c in found], device=logits.device)
            scores = torch.tensor([c.score for c in found], device=logits.device)
            terms.append(self.soft_target_ce(torch.log_softmax(logits[i], dim=0), rows, scores, linear=linear))
        return torch.stack(terms).mean() if terms else torch.zeros((), device=logits.device)

    def soft_target_ce(
        self, log_probs: torch.Tensor, rows: torch.Tensor, scores: torch.Tensor, linear: bool = False
    ) -> torch.Tensor:
        """Cross-entropy of ``log_probs`` (over the catalog) against the teacher distribution of ``scores`` at
        ``rows``: their softmax (scale-free: scores over their max, at ``kd_temperature``), or with ``linear``
        the scores over their sum."""
        if linear:
            teacher = scores / scores.sum()
        else:
            teacher = torch.softmax(scores / scores.max() / self.cfg.kd_temperature, dim=0)
        return -(teacher * log_probs[rows]).sum()

    def live_item_vectors(self, rows: Sequence[int]) -> tuple[torch.Tensor, float]:
        """Normalised item vectors of catalog ``rows`` with gradients (the item tower), and the tokens it ran."""
        states = self.fixed_states("items", self.catalog_sequences())
        if states is not None:  # the top layers only, from the cached output of the frozen ones
            chosen = [states[r] for r in rows]
            return F.normalize(self.prefix.forward_pooled(chosen).float(), dim=-1), float(sum(map(len, chosen)))
        device = next(self.model.parameters()).device
        catalog = self.catalog_sequences()  # rendered once, not per step
        ids, mask = pad_right([catalog[r] for r in rows], self.pad, device)
        hidden = backbone(self.model)(input_ids=ids, attention_mask=mask).last_hidden_state
        return F.normalize(last_token_pool(hidden, mask).float(), dim=-1), float(mask.sum())

    def item_step(self) -> dict[str, float]:
        """The item tower's collaborative loss on ``item_batch`` random items (backward included)."""
        cfg = self.cfg
        if cfg.item_weight <= 0 or not self.item_rows:
            return {"item_loss": 0.0, "tokens": 0.0}
        assert self.bank is not None
        device = next(self.model.parameters()).device
        rows = self.rng.sample(self.item_rows, min(cfg.item_batch, len(self.item_rows)))
        vectors, tokens = self.live_item_vectors(rows)
        log_probs = torch.log_softmax(
            (vectors @ self.bank.to(device).T / cfg.tau).index_put(
                (torch.arange(len(rows), device=device), torch.tensor(rows, device=device)),
                torch.tensor(float("-inf"), device=device),
            ),
            dim=1,
        )
        terms = []
        for i, r in enumerate(rows):
            keep = self.evidence.neighbors[r] >= 0
            nb = torch.from_numpy(self.evidence.neighbors[r][keep].astype(np.int64)).to(device)
            w = torch.from_numpy(self.evidence.weights[r][keep]).to(device)
            terms.append(self.soft_target_ce(log_probs[i], nb, w))
        loss = torch.stack(terms).mean()
        (cfg.item_weight * loss).backward()
        return {"item_loss": float(loss.detach()), "tokens": tokens}

    def train_step(self, batch: Sequence[Sample]) -> dict[str, Any]:
        started = time.perf_counter()
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        m = self.cfg.micro_batch
        parts = [batch[i : i + m] for i in range(0, len(batch), m)]
        warmup = self.step < self.cfg.item_warmup_steps
        stats = [] if warmup else [self.micro_step(p, len(p) / len(batch)) for p in parts]
        items = self.item_step()
        grad_norm = torch.nn.utils.clip_grad_norm_(
            [p for p in self.model.parameters() if p.requires_grad], self.cfg.grad_clip
        )
        self.optimizer.step()
        self.step += 1
        seconds = time.perf_counter() - started
        tokens = sum(x["tokens"] for x in stats) + items["tokens"]
        names = {"lm_loss": "lm_loss", "rec_loss": "rec_loss", "kd_loss": "kd_loss", "target_rank_mean": "rank"}
        # A warm-up step has no user losses: none is logged rather than a made-up 0.
        user = {name: float(np.mean([x[key] for x in stats])) for name, key in names.items()} if stats else {}
        return {
            "step": self.step,
            "phase": "item_warmup" if warmup else "joint",
            **user,
            "item_loss": items["item_loss"],
            "grad_norm": float(grad_norm),
            "step_s": round(seconds, 2),
            "tokens_per_s": round(tokens / seconds, 1),
        }

    # -- validation: teacher-forced traces (what greedy generation reproduces when the LM has learnt them) -----
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        bank = self.refresh_bank().numpy()
        self.model.eval()
        seqs = self.valid_sequences()
        states = self.fixed_states("valid", seqs)
        users = (
            self.prefix.encode(states, batch_size=8) if states is not None else encode(self.model, seqs, self.pad, 8)
        )
        ranks: list[int | None] = []
        for u, s in zip(users, self.valid_samples, strict=True):
            scores = bank @ u
            scores[self.masked(s)] = -np.inf
            t = self.catalog.row_of[s.target.item_id]
            r = int(np.sum(scores > scores[t]))
            ranks.append(r if r < 20 and np.isfinite(scores[t]) else None)
        return {f"valid_{k}": v for k, v in summarize(ranks).items()}

    # -- persistence -----------------------------------------------------------------------------------------------
    def save_adapter(self, path: Path) -> None:
        persistence.save_adapter(self.model, path, {"stage": "sft", **self.cfg.to_dict()})

    def checkpoint(self) -> None:
        persistence.save_checkpoint(
            self.model,
            self.optimizer,
            self.out,
            {"stage": "sft", **self.cfg.to_dict()},
            {"step": self.step, "best": self.best},
        )

    def _log(self, record: dict[str, Any]) -> None:
        persistence.append_metrics(self.out, record)
        log.info("sft", extra=record)

    def train(self) -> dict[str, Any]:
        cfg = self.cfg
        persistence.write_run_config(
            self.out,
            {
                "stage": "sft",
                **cfg.to_dict(),
                "base_model": public_path(self.model_dir),
                "templates": self.templates.to_dict(),
                "evidence": self.evidence_info,
            },
        )
        # The frozen layers' one-off caches (the catalog, the validation samples, the pool) before the clock: on a
        # slow CPU they take longer than the training a time limit is meant to bound.
        self.fixed_states("items", self.catalog_sequences())
        self.fixed_states("valid", self.valid_sequences())
        if self.pool:
            self.pooled_states(self.pool[:1])
        started = time.monotonic()
        rng = random.Random(cfg.seed * 7919 + self.step)
        if self.step == 0:
            first = self.validate()
            self.best = first["valid_ndcg@10"]
            self._log({"step": 0, **first})
            self.save_adapter(self.out / "adapter")  # the best so far: a run that never beats it keeps this
        else:
            self.refresh_bank()
        bar = tqdm(total=cfg.max_steps, initial=self.step, desc="SFT", unit="step", disable=not self.progress)
        stop = "max_steps"
        while self.step < cfg.max_steps:
            if cfg.time_limit_s and time.monotonic() - started > cfg.time_limit_s:
                stop = "time_limit"
                break
            record: dict[str, Any] = self.train_step(rng.sample(self.pool or self.train_samples, cfg.batch_size))
            out_of_time = bool(cfg.time_limit_s) and time.monotonic() - started > cfg.time_limit_s
            # The last step is validated too, so the adapter kept is the best of every step the run made.
            if self.step % cfg.eval_every == 0 or self.step == cfg.max_steps or out_of_time:
                record.update(self.validate())
                if record["valid_ndcg@10"] > self.best:
                    self.best = record["valid_ndcg@10"]
                    self.save_adapter(self.out / "adapter")
            elif cfg.bank_refresh_every and self.step % cfg.bank_refresh_every == 0:
                self.refresh_bank()
            self._log(record)
            bar.update(1)
            losses = {k: f"{record[k]:.3f}" for k in ("lm_loss", "rec_loss", "item_loss") if k in record}
            bar.set_postfix(**losses, best=f"{self.best:.4f}")
            if self.step % cfg.save_every == 0:
                self.checkpoint()
            if out_of_time:
                stop = "time_limit"
                break
        bar.close()
        self.checkpoint()
        if not (self.out / "adapter").exists():
            self.save_adapter(self.out / "adapter")
        return persistence.finish_run(self.out, self.step, self.best, stop, time.monotonic() - started, stage="sft")
