"""RecPO hyper-parameters (defaults from the authors' code where the reference gives them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal


@dataclass
class RecPOConfig:
    # rollouts
    group_size: int = 4
    temperature: float = 1.5
    top_k: int = 50
    max_new_tokens: int = 128
    # reward
    beta: float = 0.05
    ndcg_k: int = 1000
    tau: float = 0.02
    reward: Literal["fused", "discrete", "continuous"] = "fused"
    advantage: Literal["grpo", "rloo"] = "grpo"
    # losses
    eps_low: float = 0.2
    eps_high: float = 0.28
    ppo_epochs: int = 1  # one on-policy update per batch
    rec_weight: float = 1.0
    no_reasoning: bool = False
    # optimisation
    lr: float = 1e-5
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    batch_users: int = 4
    max_steps: int = 200
    gradient_checkpointing: bool = True
    bf16: bool = False
    lora_r: int = 4
    lora_alpha: int = 128
    lora_dropout: float = 0.0
    lora_targets: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    # validation / checkpoints
    eval_every: int = 20
    eval_users: int = 100
    eval_max_new_tokens: int = 64
    patience: int = 3
    item_refresh_every: int = 0  # 0 = at every validation
    save_every: int = 10
    time_limit_s: float = 0.0  # 0 = none; stops cleanly (with a final validation) when reached
    seed: int = 0
    protocol: Literal["temporal", "loo"] = "temporal"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RecPOConfig:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
