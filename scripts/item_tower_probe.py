"""Can the item tower learn the collaborative neighbourhoods? The SFT stage's item loss alone, then the vectors.

python scripts/item_tower_probe.py --base-model M --adapter A --data data/ml-100k --out V.npy \
    [--top-layers 2] [--steps 200] [--item-batch 128] [--lr 1e-3]

Starts from ``--adapter`` (e.g. the shipped demo adapter), trains only its top ``--top-layers`` layers on the item
tower's collaborative loss (``SFTTrainer.item_step``: each item's softmax over the catalog bank pulled toward its
evidence-table neighbours; the catalog's frozen layers cached once), refreshing the bank every 10 steps, and
writes the catalog's vectors before (``V.before.npy``) and after (``V``) for ``scripts/item_space_ceiling.py
--vectors``. The adapter itself is not written: this measures what the item space can become, nothing ships.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from r2ec.templates import domain_templates
from training.config import SFTConfig
from training.sft import SFTTrainer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-model", type=Path, required=True)
    ap.add_argument("--adapter", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--domain", default="movies_evidence")
    ap.add_argument("--top-layers", type=int, default=2)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--item-batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    args = ap.parse_args()
    cfg = SFTConfig(
        batch_size=1, lr=args.lr, train_top_layers=args.top_layers, item_batch=args.item_batch, eval_samples=1
    )
    with tempfile.TemporaryDirectory() as run:
        trainer = SFTTrainer(
            cfg,
            args.base_model,
            args.data,
            Path(run),
            domain_templates(args.domain),
            progress=False,
            init_adapter=args.adapter,
        )
        started = time.monotonic()
        np.save(args.out.with_suffix(".before.npy"), trainer.refresh_bank().numpy())
        trainable = [p for p in trainer.model.parameters() if p.requires_grad]
        for step in range(1, args.steps + 1):
            trainer.model.train()
            trainer.optimizer.zero_grad(set_to_none=True)
            stats = trainer.item_step()
            torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
            trainer.optimizer.step()
            if step % 10 == 0:
                trainer.refresh_bank()
                seconds = time.monotonic() - started
                print(f"step {step}: item loss {stats['item_loss']:.3f}, {seconds:.0f} s", flush=True)
        np.save(args.out, trainer.refresh_bank().numpy())


if __name__ == "__main__":
    main()
