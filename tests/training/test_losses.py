import math

import numpy as np
import pytest
import torch

from training.losses import (
    best_trajectory_mask,
    fused_reward,
    group_advantages,
    ppo_token_loss,
    recommendation_loss,
)


def test_fused_reward_by_hand():
    cos = np.array([0.9, 0.5, 0.7, 0.1])
    # target row 2, row 0 excluded: ranking among {1, 2, 3} -> target first
    r, rc, rd = fused_reward(cos, 2, [0], tau=0.5, beta=0.25, k=10)
    z = math.exp(0.5 / 0.5) + math.exp(0.7 / 0.5) + math.exp(0.1 / 0.5)
    assert rc == pytest.approx(math.exp(0.7 / 0.5) / z)
    assert rd == pytest.approx(1.0)
    assert r == pytest.approx(0.25 * rc + 0.75 * rd)
    r, rc, rd = fused_reward(cos, 1, [], tau=0.5, beta=0.25, k=10)  # rank 2 (after rows 0 and 2)
    assert rd == pytest.approx(1 / math.log2(4))
    assert fused_reward(cos, 1, [], tau=0.5, beta=0.25, k=2)[2] == 0.0  # beyond k
    assert fused_reward(cos, 1, [], 0.5, 0.25, 10, mode="discrete")[0] == pytest.approx(rd)
    assert fused_reward(cos, 1, [], 0.5, 0.25, 10, mode="continuous")[0] == pytest.approx(rc)


def test_group_advantages_by_hand():
    r = torch.tensor([[1.0, 2.0, 3.0, 6.0], [5.0, 5.0, 5.0, 5.0]])
    a = group_advantages(r, "grpo")
    std = torch.tensor([1.0, 2.0, 3.0, 6.0]).std()
    assert torch.allclose(a[0], (r[0] - 3.0) / (std + 1e-8))
    assert torch.all(a[1] == 0)  # identical rewards carry no signal
    loo = group_advantages(r, "rloo")
    assert torch.allclose(loo[0], torch.tensor([1 - 11 / 3, 2 - 10 / 3, 3 - 9 / 3, 6 - 6 / 3]))


def test_ppo_clipping_by_hand():
    old = torch.zeros(1, 3)
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.1]]))  # ratios 1.5, 0.5, 1.1
    mask = torch.tensor([[1, 1, 1]])
    loss, frac = ppo_token_loss(logp, old, torch.tensor([2.0]), mask, eps_low=0.2, eps_high=0.28)
    # A > 0: min(r*A, clip(r)*A) = [1.28*2, 0.5*2, 1.1*2]
    assert loss.item() == pytest.approx(-(1.28 * 2 + 0.5 * 2 + 1.1 * 2) / 3)
    assert frac.item() == pytest.approx(2 / 3)
    loss, _ = ppo_token_loss(logp, old, torch.tensor([-1.0]), mask, eps_low=0.2, eps_high=0.28)
    # A < 0: min(-r, -clip(r)) = [-1.5, -0.8, -1.1]
    assert loss.item() == pytest.approx((1.5 + 0.8 + 1.1) / 3)
    # masked tokens do not count
    loss, _ = ppo_token_loss(logp, old, torch.tensor([2.0]), torch.tensor([[1, 0, 0]]), 0.2, 0.28)
    assert loss.item() == pytest.approx(-1.28 * 2)


def test_ppo_gradient_is_policy_gradient_at_ratio_one():
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    loss, _ = ppo_token_loss(logp, logp.detach(), torch.tensor([3.0]), torch.ones(1, 2))
    loss.backward()
    assert logp.grad is not None
    assert torch.allclose(logp.grad, torch.tensor([[-1.5, -1.5]]))  # -A / n_tokens


def test_recommendation_loss_by_hand():
    u = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    v = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    tau = 0.5
    loss = recommendation_loss(u, v, ["a", "b"], torch.tensor([1.0, 0.5]), tau)
    c = 1 / math.sqrt(2)
    ce0 = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + math.exp(c / tau)))
    ce1 = -math.log(math.exp(c / tau) / (math.exp(0) + math.exp(c / tau)))
    assert loss.item() == pytest.approx((1.0 * ce0 + 0.5 * ce1) / 2, rel=1e-5)
    # a shared target is not a negative for the other user
    same = recommendation_loss(u, v, ["a", "a"], torch.tensor([1.0, 1.0]), tau)
    assert same.item() == pytest.approx(0.0, abs=1e-6)


def test_best_trajectory_mask():
    adv = torch.tensor([[0.1, 0.9, -1.0], [2.0, 0.0, 1.0]])
    assert best_trajectory_mask(adv).tolist() == [[False, True, False], [True, False, False]]
