"""Next-token choice for the transformers backend: greedy, or temperature / top-k / top-p sampling."""

from __future__ import annotations

import torch

from r2ec.engine.base import GenerationOptions, InvalidRequest


def choose_token(logits: torch.Tensor, options: GenerationOptions, generator: torch.Generator | None) -> int:
    """``logits``: (vocab,) float tensor for one row."""
    if options.greedy:
        return int(torch.argmax(logits).item())
    scores = logits.float() / options.temperature
    if options.top_k > 0:
        k = min(options.top_k, scores.shape[-1])
        kth = torch.topk(scores, k).values[-1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if options.top_p < 1.0:
        sorted_scores, order = torch.sort(scores, descending=True)
        cumulative = torch.softmax(sorted_scores, dim=-1).cumsum(dim=-1)
        drop = cumulative > options.top_p
        drop[1:] = drop[:-1].clone()  # keep the token that crosses the threshold
        drop[0] = False
        scores = scores.scatter(0, order[drop], float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    if not bool(torch.isfinite(probs).all()) or float(probs.sum()) <= 0:
        raise InvalidRequest("these sampling options leave no token to sample", "sampling")
    return int(torch.multinomial(probs, 1, generator=generator).item())
