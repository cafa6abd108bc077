"""Training hyper-parameters: what both stages share (``TrainConfig``), RecPO's own (defaults from the authors'
code where the reference gives them) and the SFT stage's (sized for 2 CPU cores)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TypeVar

C = TypeVar("C", bound="TrainConfig")


@dataclass
class TrainConfig:
    """The data, the optimiser, the LoRA, validation and checkpoints (the reference's RecPO values)."""

    protocol: Literal["temporal", "loo"] = "temporal"
    batch_size: int = 4  # users (samples) per update
    max_steps: int = 200
    lr: float = 1e-5
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    bf16: bool = False
    lora_r: int = 4
    lora_alpha: int = 128
    lora_dropout: float = 0.0
    lora_targets: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    lora_top_layers: int = 0  # LoRA on the top N layers only; 0 = every layer
    # Of the adapter, train the top N layers' weights only (0 = all): an adapter from an earlier run keeps its
    # lower layers as they are, and every fixed sequence runs the layers below once (training/frozen_prefix.py).
    train_top_layers: int = 0
    eval_every: int = 20
    eval_samples: int = 100
    save_every: int = 10
    time_limit_s: float = 0.0  # 0 = none; stops cleanly (with a final validation) when reached
    seed: int = 0
    device: str = "cpu"  # where the model trains: cpu, cuda, cuda:N

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def lora(self, num_layers: int) -> Any:
        """A fresh LoRA of this config for a model of ``num_layers`` decoder layers."""
        from peft import LoraConfig

        top = self.lora_top_layers
        return LoraConfig(
            r=self.lora_r,
            lora_alpha=self.lora_alpha,
            lora_dropout=self.lora_dropout,
            target_modules=self.lora_targets,
            layers_to_transform=list(range(num_layers - top, num_layers)) if 0 < top < num_layers else None,
            task_type="CAUSAL_LM",
        )


@dataclass
class RecPOConfig(TrainConfig):
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
    gradient_checkpointing: bool = True
    # validation
    eval_max_new_tokens: int = 64
    patience: int = 3
    item_refresh_every: int = 0  # 0 = at every validation


@dataclass
class SFTConfig(TrainConfig):
    """Sized for 2 CPU cores: bfloat16 weights, LoRA (r 16) on the top 8 layers, micro-batches of 2."""

    protocol: Literal["temporal", "loo"] = "loo"
    batch_size: int = 8
    max_steps: int = 300
    lr: float = 3e-4
    bf16: bool = True
    lora_r: int = 16
    lora_alpha: int = 32
    lora_top_layers: int = 8
    eval_every: int = 50
    eval_samples: int = 200
    micro_batch: int = 2
    lm_weight: float = 1.0
    rec_weight: float = 1.0
    tau: float = 0.02
    bank_refresh_every: int = 25
    live_negatives: int = 6  # random items per micro-batch encoded live too, so "live vs stale bank" never tells
    # Distillation from the collaborative teacher: the user's softmax over the bank is pulled toward the
    # evidence table's scores over its window (training interactions only, never the sample's own future). One
    # hard target per sample teaches slowly on a CPU budget; 50 soft ones teach much faster.
    kd_weight: float = 1.0
    kd_candidates: int = 50
    kd_temperature: float = 0.05
    # How the candidates' scores become the teacher's distribution: "softmax" (scores over their max, at
    # ``kd_temperature``: nearly all mass on the strongest few) or "linear" (scores over their sum). The
    # distillation optimum of "linear" over the top 8 ranks at NDCG@10 0.068 in sitting 4's item space (0.076 in
    # sitting 8's), where the top candidate alone (what a peaked softmax teaches) reaches 0.053 (docs/results.md,
    # sittings 7 and 12).
    kd_teacher: Literal["softmax", "linear"] = "softmax"
    # The temperature of the user's softmax that the teacher is matched against (0 = ``tau``, the reference's
    # 0.02, which scores and rewards keep). The item vectors are nearly parallel, so the softmax at 0.02 is flat
    # over them and its optimum spends weight on items outside the candidates: the top-8 linear teacher's optimum
    # ranks at NDCG@10 0.076 at 0.02, 0.092 at 0.01 and 0.096 at 0.005 in sitting 8's item space, against 0.098 for
    # ranking the candidates first (docs/results.md, sitting 13).
    kd_tau: float = 0.0
    # The item tower learns the collaborative structure too: per step, ``item_batch`` items encoded live are pulled
    # toward their neighbours in the evidence table (the same soft-target cross-entropy). Without it the item
    # vectors stay text-semantic (genre, year) and a user vector near the right candidates still ranks their
    # collaborative neighbours no better than genre does.
    item_weight: float = 1.0
    item_batch: int = 32
    # The first this many steps train the item tower alone. Sharing one clipped, Adam-normalised update with the
    # user losses starves the item loss (docs/results.md, sitting 5), and until the item vectors spread apart no
    # user vector can rank much better than genre does; so the item space is shaped first.
    item_warmup_steps: int = 0
    # A fixed pool of this many training samples (0 = draw from all of them) whose user sequences run the frozen
    # layers once: with ``train_top_layers`` small a step then costs a few layers instead of the whole model.
    user_pool: int = 0
    # The LM loss on this many random completion positions per sample (0 = all): an unbiased estimate of the
    # token-mean loss. On a small model the LM head (576 x 49,152) costs several decoder layers per position.
    lm_positions: int = 0
