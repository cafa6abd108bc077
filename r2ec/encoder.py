"""Reference encoder on plain transformers: token-id sequences -> pooled, normalised vectors.

Batched with right padding, sorted by length so that padding stays small; works on CPU and GPU, fp32 and bf16.
Training uses ``forward_pooled`` with gradients; export, evaluation and the transformers engine use ``encode``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from r2ec.pooling import backbone, l2_normalize, last_token_pool


def pad_right(sequences: Sequence[Sequence[int]], pad_id: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(list(seq), dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids.to(device), mask.to(device)


def forward_pooled(model: Any, sequences: Sequence[Sequence[int]], pad_id: int) -> torch.Tensor:
    """Un-normalised pooled vectors for one batch (keeps the autograd graph when gradients are enabled)."""
    device = next(model.parameters()).device
    ids, mask = pad_right(sequences, pad_id, device)
    out = backbone(model)(input_ids=ids, attention_mask=mask)
    return last_token_pool(out.last_hidden_state, mask)


def pad_id_of(tokenizer: Any) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0


@torch.inference_mode()
def encode(
    model: Any,
    sequences: Sequence[Sequence[int]],
    pad_id: int,
    batch_size: int = 16,
    max_batch_tokens: int = 16384,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Normalised float32 vectors, one per sequence, in input order."""
    if not sequences:
        raise ValueError("nothing to encode")
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    out: list[np.ndarray | None] = [None] * len(sequences)
    start = 0
    while start < len(order):
        end = start + 1
        # Grow the batch while it fits both limits (lengths are sorted, so the last one is the longest).
        while (
            end < len(order)
            and end - start < batch_size
            and (end + 1 - start) * len(sequences[order[end]]) <= max_batch_tokens
        ):
            end += 1
        chunk = [sequences[i] for i in order[start:end]]
        pooled = forward_pooled(model, chunk, pad_id).float().cpu().numpy()
        for row, i in enumerate(order[start:end]):
            out[i] = pooled[row]
        if progress is not None:
            progress(end - start)
        start = end
    return l2_normalize(np.stack([v for v in out if v is not None]))
