"""Pooling: the final-layer, post-norm hidden state at the last real token, L2-normalised (reference §2)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last non-pad position per row; correct for right and left padding alike."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (attention_mask.to(torch.long) * positions).argmax(dim=1)


def last_token_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return hidden[rows, last_token_index(attention_mask)]


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.asarray(x / np.maximum(norm, 1e-12), dtype=np.float32)


def backbone(model: Any) -> Any:
    """The decoder stack whose output is the post-norm hidden state that feeds the LM head.

    Running the backbone instead of the full causal LM skips the vocabulary projection, which for Gemma's
    256k vocabulary costs more than the rest of the forward pass.
    """
    get_decoder = getattr(model, "get_decoder", None)
    if get_decoder is not None:
        decoder = get_decoder()
        if decoder is not None and decoder is not model:
            return decoder
    inner = getattr(model, "model", None)
    if inner is not None:
        return inner
    raise TypeError(f"cannot find the decoder of {type(model).__name__}")
