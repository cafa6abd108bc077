"""SASRec (Kang & McAuley, 2018) in PyTorch: causal self-attention over the item sequence, full-softmax loss.

Trained on the training sequences of the chosen protocol, early-stopped on valid NDCG@10, evaluated with the
same history window, exclusion and metrics as the LLM.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from model_export.baselines import rank_from_scores, training_sequences
from model_export.data.splits import Sample, Split
from r2ec.catalog import Catalog, Event
from r2ec.exclusion import Mask
from r2ec.metrics import summarize


@dataclass(frozen=True)
class SASRecConfig:
    dim: int = 64
    layers: int = 2
    heads: int = 1
    dropout: float = 0.2
    max_len: int = 20
    lr: float = 1e-3
    batch_size: int = 128
    epochs: int = 200
    patience: int = 10
    seed: int = 0


class SASRecModel(nn.Module):
    def __init__(self, n_items: int, cfg: SASRecConfig):
        super().__init__()
        self.cfg = cfg
        self.items = nn.Embedding(n_items + 1, cfg.dim, padding_idx=0)  # row 0 = padding, item row r -> r + 1
        self.positions = nn.Embedding(cfg.max_len, cfg.dim)
        layer = nn.TransformerEncoderLayer(
            cfg.dim, cfg.heads, cfg.dim * 4, cfg.dropout, batch_first=True, norm_first=True, activation="gelu"
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.dim)
        self.dropout = nn.Dropout(cfg.dropout)
        # nn.Embedding's N(0, 1) default, scaled by sqrt(d) and tied to the output layer, starts the loss far above
        # a uniform guess (about 50 vs ln(n_items)) and never recovers: initialise as the reference code does.
        for emb in (self.items, self.positions):
            nn.init.normal_(emb.weight, std=0.02)
        with torch.no_grad():
            self.items.weight[0].zero_()

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """seq: (B, L) left-padded item ids (0 = pad) -> hidden states (B, L, dim)."""
        length = seq.shape[1]
        pos = torch.arange(length, device=seq.device).unsqueeze(0)
        x = self.dropout(self.items(seq) * self.cfg.dim**0.5 + self.positions(pos))
        causal = torch.triu(torch.ones(length, length, dtype=torch.bool, device=seq.device), diagonal=1)
        h = self.encoder(x, mask=causal, src_key_padding_mask=(seq == 0))
        return self.norm(h)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.items.weight[1:].T


class SASRec:
    def __init__(self, catalog: Catalog, cfg: SASRecConfig = SASRecConfig(), window: int = 20, mask: Mask = "window"):
        self.catalog = catalog
        self.cfg = cfg
        self.window = window
        self.mask: Mask = mask
        torch.manual_seed(cfg.seed)
        self.model = SASRecModel(len(catalog), cfg)
        self.history: list[dict[str, float]] = []

    def _encode_ids(self, events: Sequence[Event]) -> list[int]:
        return [self.catalog.row_of[e.item_id] + 1 for e in events]

    def _windows(self, sequences: Mapping[str, Sequence[Event]]) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.cfg.max_len
        inputs, targets = [], []
        for events in sequences.values():
            ids = self._encode_ids(events)
            # Overlapping windows of n inputs + n shifted targets, ending at the sequence's end.
            for end in range(len(ids), 1, -n):
                chunk = ids[max(0, end - n - 1) : end]
                x, y = chunk[:-1], chunk[1:]
                pad = n - len(x)
                inputs.append([0] * pad + x)
                targets.append([0] * pad + y)
        return torch.tensor(inputs), torch.tensor(targets)

    def _batch_inputs(self, samples: Sequence[Sample]) -> torch.Tensor:
        n = self.cfg.max_len
        rows = []
        for s in samples:
            ids = self._encode_ids(s.history[-n:])
            rows.append([0] * (n - len(ids)) + ids)
        return torch.tensor(rows)

    @torch.no_grad()
    def scores(self, samples: Sequence[Sample]) -> np.ndarray:
        self.model.eval()
        h = self.model(self._batch_inputs(samples))[:, -1, :]
        return self.model.logits(h).numpy()

    def ranks(self, samples: Sequence[Sample], batch: int = 512) -> list[int | None]:
        out: list[int | None] = []
        for start in range(0, len(samples), batch):
            chunk = samples[start : start + batch]
            for s, sc in zip(chunk, self.scores(chunk), strict=True):
                out.append(rank_from_scores(sc, self.catalog, s, self.window, self.mask))
        return out

    def fit(
        self,
        timelines: Mapping[str, Sequence[Event]],
        splits: Mapping[Split, Sequence[Sample]],
        valid: Sequence[Sample],
        progress: bool = True,
    ) -> SASRec:
        x, y = self._windows(training_sequences(timelines, splits))
        opt = torch.optim.Adam(self.model.parameters(), lr=self.cfg.lr)
        loss_fn = nn.CrossEntropyLoss(ignore_index=-1)
        best, best_state, stale = -1.0, copy.deepcopy(self.model.state_dict()), 0
        gen = torch.Generator().manual_seed(self.cfg.seed)
        bar = tqdm(range(self.cfg.epochs), desc="SASRec", unit="epoch", disable=not progress)
        for epoch in bar:
            self.model.train()
            order = torch.randperm(len(x), generator=gen)
            total, started = 0.0, time.perf_counter()
            for start in range(0, len(x), self.cfg.batch_size):
                idx = order[start : start + self.cfg.batch_size]
                h = self.model(x[idx])
                logits = self.model.logits(h)
                loss = loss_fn(logits.reshape(-1, logits.shape[-1]), (y[idx] - 1).reshape(-1))
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            valid_ndcg = summarize(self.ranks(valid))["ndcg@10"] if valid else 0.0
            self.history.append(
                {
                    "epoch": epoch,
                    "loss": total / len(x),
                    "valid_ndcg@10": valid_ndcg,
                    "seconds": time.perf_counter() - started,
                }
            )
            bar.set_postfix(loss=f"{total / len(x):.3f}", valid_ndcg10=f"{valid_ndcg:.4f}")
            if valid_ndcg > best:
                best, best_state, stale = valid_ndcg, copy.deepcopy(self.model.state_dict()), 0
            else:
                stale += 1
                if stale >= self.cfg.patience:
                    break
        self.model.load_state_dict(best_state)
        return self
