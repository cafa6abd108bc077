"""What both trainers stand on: the model to train, the data and splits of a protocol, the optimiser, resuming.

A trainer gives its config (a ``training.config.TrainConfig``: optimiser, LoRA, protocol, validation size);
``OUT/checkpoint`` (``--resume``) or ``init_adapter`` (continue from another run's adapter with a fresh
optimiser) decide where the weights start, else a fresh LoRA of the config.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import torch

from model_export.data.format import Dataset
from model_export.data.splits import Sample, select_samples
from model_export.data.splits import split as make_split
from model_export.evidence import TransitionCounts, build_counts
from r2ec import logs
from r2ec.catalog import Catalog
from r2ec.chat import ChatRenderer
from r2ec.evidence import Transitions
from r2ec.prompts import user_prompt
from r2ec.templates import PromptTemplates
from training import persistence
from training.config import TrainConfig

log = logs.get(__name__)


_LAYER = re.compile(r"\.layers\.(\d+)\.")


def freeze_below(model: Any, first: int) -> int:
    """Stop training every parameter of a decoder layer below ``first``; returns how many stay trainable."""
    left = 0
    for name, p in model.named_parameters():
        found = _LAYER.search(name)
        if p.requires_grad and found and int(found.group(1)) < first:
            p.requires_grad_(False)
        left += int(p.requires_grad)
    if not left:
        raise ValueError(f"nothing trainable at or above layer {first}")
    return left


class TrainerBase:
    """``__init__`` loads what every trainer needs, then calls ``setup`` for the trainer's own state (the stage-1
    SFT adapter is the usual ``init_adapter`` of stage 2; ``resume`` continues ``OUT/checkpoint`` instead)."""

    def __init__(
        self,
        cfg: TrainConfig,
        model_dir: Path,
        data_dir: Path,
        out_dir: Path,
        templates: PromptTemplates,
        resume: bool = False,
        progress: bool = True,
        init_adapter: Path | None = None,
    ):
        self.cfg, self.out, self.templates, self.progress, self.model_dir = cfg, out_dir, templates, progress, model_dir
        random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.tokenizer, self.pad, self.model = persistence.trainable_model(
            model_dir,
            cfg.bf16,
            out_dir,
            resume,
            init_adapter,
            lambda base: cfg.lora(int(base.config.num_hidden_layers)),
            cfg.device,
        )
        if cfg.train_top_layers > 0:
            freeze_below(self.model, int(self.model.config.num_hidden_layers) - cfg.train_top_layers)
        self.renderer = ChatRenderer(self.tokenizer, templates)
        data = Dataset.load(data_dir)
        self.catalog: Catalog = data.catalog
        self.splits = make_split(data.timelines(), cfg.protocol, templates.window_size)
        self.train_samples = list(self.splits["train"])
        self.valid_samples = select_samples(self.splits["valid"], cfg.eval_samples, seed=cfg.seed)
        self.data_dir = data_dir
        self.counts: TransitionCounts | None = None
        self.evidence: Transitions | None = None
        self.evidence_info: dict[str, Any] = {}
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.step, self.best = 0, -1.0
        self.setup(resume)

    def setup(self, resume: bool) -> None:
        """The trainer's own state; the default only restores the loop state when resuming."""
        self.resume_state(resume)

    # -- evidence: what a sample's prompt shows --------------------------------------------------------------------
    def load_evidence(self) -> Transitions:
        """The evidence table of the protocol's training interactions (and the counts to take a sample's own
        future out of it)."""
        self.counts, self.evidence_info = build_counts(
            self.data_dir, self.catalog, self.cfg.protocol, self.templates.window_size
        )
        self.evidence = self.counts.table()
        return self.evidence

    def sample_evidence(self, s: Sample) -> Transitions | None:
        """The evidence table as ``s`` may see it: without its user's ratings from its target on."""
        if self.counts is None or self.evidence is None:
            return None
        return self.counts.for_sample(self.evidence, s, self.catalog)

    def shown_exclusions(self, s: Sample) -> tuple[str, ...]:
        """Items the prompt's evidence leaves out besides the window: what the ranking masks (``seen`` for loo)."""
        return s.seen if self.cfg.protocol == "loo" else ()

    def message(self, s: Sample, evidence: Transitions | None = None) -> str:
        """The user message of ``s``, with ``evidence`` (default: the sample's own table) when prompts show it."""
        table = self.sample_evidence(s) if evidence is None else evidence
        return user_prompt(s.history, self.catalog, s.now, self.templates, table, self.shown_exclusions(s))

    def resume_state(self, resume: bool) -> dict[str, Any] | None:
        """The loop state of ``OUT/checkpoint`` (optimiser restored; step and best set), or None."""
        state = persistence.load_state(self.out, self.optimizer) if resume else None
        if state is not None:
            self.step, self.best = state["step"], state["best"]
            log.info("resumed", extra={"step": self.step, "best": self.best})
        return state
