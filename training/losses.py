"""The pieces of the RecPO objective (reference §5), as pure functions over tensors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from r2ec.metrics import ndcg_at
from r2ec.scoring import target_rank_and_probability

AdvantageMode = Literal["grpo", "rloo"]
RewardMode = Literal["fused", "discrete", "continuous"]


def fused_reward(
    cosines: np.ndarray,
    target: int,
    exclude: Sequence[int],
    tau: float,
    beta: float,
    k: int,
    mode: RewardMode = "fused",
) -> tuple[float, float, float]:
    """R = beta * R_c + (1 - beta) * R_d over the whole catalog, history excluded.

    R_c = softmax(cos / tau) probability of the target; R_d = NDCG@k of the target (one relevant item).
    Returns (R, R_c, R_d). ``mode`` keeps only one part for the paper's ablations.
    """
    rank, prob = target_rank_and_probability(cosines, target, exclude, tau)
    ndcg = ndcg_at(rank, k)
    if mode == "discrete":
        return ndcg, prob, ndcg
    if mode == "continuous":
        return prob, prob, ndcg
    return beta * prob + (1 - beta) * ndcg, prob, ndcg


def group_advantages(rewards: torch.Tensor, mode: AdvantageMode = "grpo", eps: float = 1e-8) -> torch.Tensor:
    """rewards: (users, G). GRPO: (R - mean) / (std + eps) within each user's group; RLOO: R - mean of the others."""
    if mode == "grpo":
        mean = rewards.mean(dim=1, keepdim=True)
        std = rewards.std(dim=1, keepdim=True) if rewards.shape[1] > 1 else torch.zeros_like(mean)
        return (rewards - mean) / (std + eps)
    if mode == "rloo":
        g = rewards.shape[1]
        if g < 2:
            return torch.zeros_like(rewards)
        others = (rewards.sum(dim=1, keepdim=True) - rewards) / (g - 1)
        return rewards - others
    raise ValueError(f"unknown advantage mode {mode!r}")


def ppo_token_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    eps_low: float = 0.2,
    eps_high: float = 0.28,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped surrogate with asymmetric clipping, averaged over all completion tokens in the batch.

    logp, old_logp, mask: (N, T); advantages: (N,). Returns (loss, fraction of tokens whose ratio was clipped).
    """
    ratio = torch.exp(logp - old_logp)
    adv = advantages.unsqueeze(1)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1 - eps_low, 1 + eps_high) * adv
    per_token = -torch.minimum(unclipped, clipped)
    m = mask.to(per_token.dtype)
    denom = m.sum().clamp(min=1.0)
    loss = (per_token * m).sum() / denom
    was_clipped = ((ratio < 1 - eps_low) | (ratio > 1 + eps_high)).to(per_token.dtype)
    return loss, (was_clipped * m).sum() / denom


def recommendation_loss(
    user_vectors: torch.Tensor,
    item_vectors: torch.Tensor,
    targets: Sequence[str],
    weights: torch.Tensor,
    tau: float,
) -> torch.Tensor:
    """Softmax over in-batch target items of cos / tau; row i's positive is item i. Weighted mean over users.

    Users that share a target would make each other's positive a negative: those columns are masked.
    """
    u = F.normalize(user_vectors.float(), dim=-1)
    v = F.normalize(item_vectors.float(), dim=-1)
    logits = u @ v.T / tau
    same = torch.tensor([[a == b for b in targets] for a in targets], device=logits.device)
    eye = torch.eye(len(targets), dtype=torch.bool, device=logits.device)
    logits = logits.masked_fill(same & ~eye, float("-inf"))
    ce = F.cross_entropy(logits, torch.arange(len(targets), device=logits.device), reduction="none")
    return (weights.to(ce.dtype) * ce).sum() / max(len(targets), 1)


def best_trajectory_mask(advantages: torch.Tensor) -> torch.Tensor:
    """(users, G) -> bool mask with exactly one True per user: the trajectory with the highest advantage."""
    mask = torch.zeros_like(advantages, dtype=torch.bool)
    mask[torch.arange(advantages.shape[0]), advantages.argmax(dim=1)] = True
    return mask
