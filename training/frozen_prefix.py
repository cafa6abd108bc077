"""The layers below the first trainable one never change while training: run them once per fixed sequence.

With LoRA on the top layers only, the hidden state entering the first adapted layer is a constant of the
sequence. The item sequences (the whole catalog, encoded for the bank every few steps and live for the item
tower every step) and the validation samples are fixed, so their states at that boundary are computed once and
every later forward runs the top layers alone: on SmolLM2 with LoRA on the top 8 of 30 layers, an item forward
costs 8/30 of a full one. The result is the same post-norm last-token state (tested against the full forward).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from r2ec.encoder import encode, pad_right
from r2ec.pooling import backbone, l2_normalize, last_token_pool


class _Stop(Exception):
    """Raised by the boundary hook: nothing above the boundary is needed while caching."""


def first_trainable_layer(model: Any) -> int:
    """Index of the lowest decoder layer with a trainable parameter (the number of layers if none)."""
    layers = backbone(model).layers
    for i, layer in enumerate(layers):
        if any(p.requires_grad for p in layer.parameters()):
            return i
    return len(layers)


class FrozenPrefix:
    def __init__(self, model: Any, pad_id: int):
        self.model, self.pad_id = model, pad_id
        self.start = first_trainable_layer(model)
        self.enabled = self.start > 0

    @torch.no_grad()
    def states(
        self,
        sequences: Sequence[Sequence[int]],
        batch_size: int = 16,
        progress: Callable[[int], object] | None = None,
    ) -> list[torch.Tensor]:
        """Per sequence, the (length, hidden) input of the first trainable layer (the model's dtype, on CPU);
        ``progress(n)`` after every batch of n."""
        inner = backbone(self.model)
        device = next(self.model.parameters()).device
        captured: list[torch.Tensor] = []

        def grab(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            captured.append(args[0] if args else kwargs["hidden_states"])
            raise _Stop

        out: list[torch.Tensor] = []
        handle = inner.layers[self.start].register_forward_pre_hook(grab, with_kwargs=True)
        try:
            for lo in range(0, len(sequences), batch_size):
                chunk = sequences[lo : lo + batch_size]
                ids, mask = pad_right(chunk, self.pad_id, device)
                captured.clear()
                with contextlib.suppress(_Stop):
                    inner(input_ids=ids, attention_mask=mask)
                out.extend(captured[0][row, : len(seq)].detach().cpu() for row, seq in enumerate(chunk))
                if progress is not None:
                    progress(len(chunk))
        finally:
            handle.remove()
        return out

    @contextlib.contextmanager
    def _top_only(self) -> Iterator[Any]:
        inner = backbone(self.model)
        full = inner.layers
        inner.layers = nn.ModuleList(list(full)[self.start :])
        try:
            yield inner
        finally:
            inner.layers = full

    def forward_hidden(self, states: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(post-norm hidden states, attention mask) of sequences given by their cached boundary states, right
        padded; keeps the autograd graph when gradients are enabled (the LM loss needs every position)."""
        device = next(self.model.parameters()).device
        longest = max(len(s) for s in states)
        hidden = states[0].shape[-1]
        x = torch.zeros((len(states), longest, hidden), dtype=states[0].dtype, device=device)
        mask = torch.zeros((len(states), longest), dtype=torch.long, device=device)
        for row, s in enumerate(states):
            x[row, : len(s)] = s.to(device)
            mask[row, : len(s)] = 1
        with self._top_only() as inner:
            out = inner(inputs_embeds=x, attention_mask=mask).last_hidden_state
        return out, mask

    def forward_pooled(self, states: Sequence[torch.Tensor]) -> torch.Tensor:
        """Post-norm last-token states (un-normalised) of sequences given by their cached boundary states; keeps
        the autograd graph when gradients are enabled."""
        return last_token_pool(*self.forward_hidden(states))

    @torch.no_grad()
    def encode(self, states: Sequence[torch.Tensor], batch_size: int = 32) -> np.ndarray:
        """Normalised float32 vectors of sequences given by their cached states, in input order (batches of
        similar length, as ``r2ec.encoder.encode``)."""
        order = sorted(range(len(states)), key=lambda i: len(states[i]))
        out = np.zeros((len(states), states[0].shape[-1]), dtype=np.float32)
        for lo in range(0, len(order), batch_size):
            chunk = order[lo : lo + batch_size]
            out[chunk] = self.forward_pooled([states[i] for i in chunk]).float().cpu().numpy()
        return l2_normalize(out)

    @torch.no_grad()
    def matches_full_forward(self, sequences: Sequence[Sequence[int]], min_cosine: float = 0.999) -> bool:
        """Whether the cached path gives the full forward's vectors on ``sequences`` (a model whose forward
        transforms ``inputs_embeds``, as Gemma's scaling does, would not: callers then run the full forward)."""
        cached = self.encode(self.states(sequences))
        full = encode(self.model, sequences, self.pad_id)
        return bool(np.min(np.sum(cached * full, axis=1)) >= min_cosine)
