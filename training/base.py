"""What both trainers stand on: the model to train, the data and splits of a protocol, the optimiser, resuming.

A trainer gives its config (``lr``, ``weight_decay``, ``bf16``, ``seed``, ``protocol``), how a fresh LoRA is
configured, and how many validation samples it wants; ``OUT/checkpoint`` (``--resume``) or ``init_adapter``
(continue from another run's adapter with a fresh optimiser) decide where the weights start.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from model_export.data.format import Dataset
from model_export.data.splits import split as make_split
from model_export.evaluate import select_samples
from r2ec import logs
from r2ec.catalog import Catalog
from r2ec.chat import ChatRenderer
from r2ec.templates import PromptTemplates
from training import persistence

log = logs.get(__name__)


class TrainerBase:
    def __init__(
        self,
        cfg: Any,
        model_dir: Path,
        data_dir: Path,
        out_dir: Path,
        templates: PromptTemplates,
        *,
        resume: bool,
        progress: bool,
        init_adapter: Path | None,
        fresh_lora: Callable[[Any], Any],
        valid_samples: int,
    ):
        self.cfg, self.out, self.templates, self.progress, self.model_dir = cfg, out_dir, templates, progress, model_dir
        random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.tokenizer, self.pad, self.model = persistence.trainable_model(
            model_dir, cfg.bf16, out_dir, resume, init_adapter, fresh_lora
        )
        self.renderer = ChatRenderer(self.tokenizer, templates)
        data = Dataset.load(data_dir)
        self.catalog: Catalog = data.catalog
        self.splits = make_split(data.timelines(), cfg.protocol, templates.window_size)
        self.train_samples = list(self.splits["train"])
        self.valid_samples = select_samples(self.splits["valid"], valid_samples, seed=cfg.seed)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.step, self.best = 0, -1.0

    def resume_state(self, resume: bool) -> dict[str, Any] | None:
        """The loop state of ``OUT/checkpoint`` (optimiser restored; step and best set), or None."""
        state = persistence.load_state(self.out, self.optimizer) if resume else None
        if state is not None:
            self.step, self.best = state["step"], state["best"]
            log.info("resumed", extra={"step": self.step, "best": self.best})
        return state
