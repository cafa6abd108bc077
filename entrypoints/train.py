"""``r2ec train``: stage 1 (SFT on interaction-of-thought traces) and stage 2 (RecPO)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from entrypoints.common import (
    DataOption,
    app,
    fail,
    mask_for,
    need_bundle,
    need_dataset,
    need_file,
    setup_logging,
    threads_for,
)
from training.config import RecPOConfig, SFTConfig


def _per_stage(help: str, name: str) -> str:
    """``help`` and each stage's own default of config field ``name`` (given nothing, a stage keeps its own)."""
    return f"{help} Default: the stage's (sft {getattr(SFTConfig, name)}, recpo {getattr(RecPOConfig, name)})."


def _device_name_ok(name: str) -> bool:
    return name in ("auto", "cpu", "cuda") or (name.startswith("cuda:") and name[5:].isdigit())


def _train_device(name: str) -> str:
    """``auto`` resolved (cuda where torch sees a GPU, else cpu); a GPU asked for that torch cannot see fails."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        fail(f"--device {name}: torch sees no GPU here")
    return name


@app.command("train")
def train(
    data: DataOption,
    out: Annotated[Path, typer.Option(help="Run directory: adapter/, checkpoint/, metrics.jsonl, summary.json.")],
    stage: Annotated[str, typer.Option(help="sft (interaction-of-thought warm start) or recpo (RL).")] = "recpo",
    bundle: Annotated[Path | None, typer.Option(help="Take the base model and templates from this bundle.")] = None,
    base_model: Annotated[Path | None, typer.Option(help="Base model directory (with --domain).")] = None,
    domain: Annotated[str | None, typer.Option(help="Prompt wording when --base-model is given.")] = None,
    init_adapter: Annotated[
        Path | None, typer.Option(help="Start from this adapter (recpo: the sft stage's; sft: an earlier run's).")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/checkpoint.")] = False,
    no_reasoning: Annotated[
        bool, typer.Option("--no-reasoning", help="Recommendation loss only, on prompt + <answer>.")
    ] = False,
    reward: Annotated[
        str, typer.Option(help="fused, discrete (NDCG only) or continuous (probability only).")
    ] = "fused",
    advantage: Annotated[str, typer.Option(help="grpo (group-normalised) or rloo.")] = "grpo",
    group_size: Annotated[int, typer.Option(help="Trajectories per user.")] = 4,
    batch_users: Annotated[int | None, typer.Option(help=_per_stage("Users per update.", "batch_size"))] = None,
    micro_batch: Annotated[int, typer.Option(help="sft: users per forward (gradient accumulation).")] = 2,
    max_steps: Annotated[int | None, typer.Option(help=_per_stage("Updates.", "max_steps"))] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Reasoning tokens per rollout.")] = 128,
    temperature: Annotated[float, typer.Option(help="Rollout temperature.")] = 1.5,
    top_k: Annotated[int, typer.Option(help="Rollout top-k.")] = 50,
    beta: Annotated[float, typer.Option(help="Weight of the continuous reward.")] = 0.05,
    ppo_epochs: Annotated[int, typer.Option(help="recpo: clipped updates per batch of rollouts.")] = 1,
    lr: Annotated[float | None, typer.Option(help=_per_stage("AdamW learning rate.", "lr"))] = None,
    lora_r: Annotated[int | None, typer.Option(help=_per_stage("LoRA rank.", "lora_r"))] = None,
    lora_alpha: Annotated[int | None, typer.Option(help=_per_stage("LoRA alpha.", "lora_alpha"))] = None,
    kd_weight: Annotated[float, typer.Option(help="sft: weight of the distillation from the evidence table.")] = 1.0,
    kd_candidates: Annotated[
        int, typer.Option(help="sft: the distillation's teacher spreads over the top N evidence candidates.")
    ] = SFTConfig.kd_candidates,
    kd_teacher: Annotated[
        str,
        typer.Option(help="sft: the teacher's weights: softmax (of scores over their max) or linear (over their sum)."),
    ] = SFTConfig.kd_teacher,
    kd_tau: Annotated[
        float,
        typer.Option(help="sft: temperature of the user's softmax in the distillation (0 = the scoring tau, 0.02)."),
    ] = SFTConfig.kd_tau,
    rec_weight: Annotated[
        float, typer.Option(help="sft: weight of the recommendation loss on the target.")
    ] = SFTConfig.rec_weight,
    item_weight: Annotated[float, typer.Option(help="sft: weight of the item tower's collaborative loss.")] = 1.0,
    item_batch: Annotated[
        int, typer.Option(help="sft: items per step in the item tower's collaborative loss.")
    ] = SFTConfig.item_batch,
    item_warmup_steps: Annotated[
        int, typer.Option(help="sft: the first N steps train the item tower's collaborative loss alone.")
    ] = SFTConfig.item_warmup_steps,
    lora_top_layers: Annotated[int, typer.Option(help="sft: LoRA on the top N layers only (0 = all).")] = 8,
    train_top_layers: Annotated[
        int, typer.Option(help="sft: train the adapter's top N layers only (0 = all); the rest run once, cached.")
    ] = 0,
    user_pool: Annotated[
        int,
        typer.Option(help="sft: draw from a fixed pool of N training samples, their frozen layers cached (0 = all)."),
    ] = 0,
    lm_positions: Annotated[
        int, typer.Option(help="sft: LM loss on N random completion tokens per sample (0 = all).")
    ] = 0,
    bank_refresh_every: Annotated[
        int, typer.Option(help="sft: re-encode the catalog's bank every N steps.")
    ] = SFTConfig.bank_refresh_every,
    eval_every: Annotated[int | None, typer.Option(help=_per_stage("Validate every N steps.", "eval_every"))] = None,
    eval_users: Annotated[int | None, typer.Option(help=_per_stage("Validation samples.", "eval_samples"))] = None,
    eval_max_new_tokens: Annotated[int, typer.Option(help="Greedy reasoning tokens at validation.")] = 64,
    patience: Annotated[int, typer.Option(help="Validations without improvement before stopping.")] = 3,
    protocol: Annotated[str, typer.Option(help="Split whose train part is learnt from (loo or temporal).")] = "loo",
    time_limit_s: Annotated[
        float,
        typer.Option(help="Stop (with a final validation) after this long (sft: after the frozen layers' caches)."),
    ] = 0.0,
    bf16: Annotated[
        bool | None,
        typer.Option(
            "--bf16/--no-bf16",
            help="bfloat16 weights (default: where the CPU computes bfloat16 natively, AVX512-BF16/AMX/Arm BF16; "
            "emulated bfloat16 is many times slower than float32).",
        ),
    ] = None,
    gradient_checkpointing: Annotated[bool, typer.Option(help="Trade compute for memory.")] = True,
    device: Annotated[
        str, typer.Option(help="Where to train: auto (the first GPU when torch sees one, else cpu), cpu, cuda, cuda:N.")
    ] = "auto",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Train a LoRA adapter: stage sft (traces + recommendation loss) then recpo (RL); writes OUT/adapter."""
    if stage not in ("sft", "recpo"):
        fail("stage must be sft or recpo")
    if not _device_name_ok(device):
        fail(f"--device must be auto, cpu, cuda or cuda:N, not {device!r}")
    if kd_teacher not in ("softmax", "linear") or kd_candidates < 1:
        fail("--kd-teacher must be softmax or linear, and --kd-candidates at least 1")
    if not (0 <= kd_tau < float("inf")):  # also refuses nan, which no comparison lets through
        fail("--kd-tau must be a finite number >= 0 (0 = the scoring tau)")
    if item_warmup_steps < 0 or (item_warmup_steps and item_weight <= 0):
        fail("--item-warmup-steps must be >= 0, and needs an --item-weight above 0 (the loss it trains)")
    mask_for(protocol, None)
    need_dataset(data)
    if bundle is not None:
        need_bundle(bundle)
    elif base_model is None or domain is None:
        fail("give --bundle, or --base-model with --domain")
    if init_adapter is not None:
        need_file(init_adapter / "adapter_config.json", "adapter config")
    setup_logging("warning")
    threads_for(None)
    from r2ec.templates import PromptTemplates, domain_templates

    if bundle is not None:
        from model_export.bundle import load_bundle

        b = load_bundle(bundle)
        model_dir, templates = b.model_dir, b.templates
    elif base_model is not None and domain is not None:
        model_dir, templates = base_model, domain_templates(domain)
    else:
        fail("give --bundle, or --base-model with --domain")
    assert isinstance(templates, PromptTemplates)
    from r2ec.engine.selection import native_bf16

    device = _train_device(device)
    native = native_bf16(device)
    if bf16 and not native:
        typer.echo(f"warning: {device} computes no native bfloat16; --bf16 runs emulated (slow)", err=True)
    bf16 = native if bf16 is None else bf16
    # What both stages take from the command line (an option not given keeps the stage's own default); each
    # stage adds its own knobs below.
    given: dict[str, Any] = dict(
        protocol=protocol,
        batch_size=batch_users,
        max_steps=max_steps,
        lr=lr,
        lora_r=lora_r,
        lora_alpha=lora_alpha,
        bf16=bf16,
        eval_every=eval_every,
        eval_samples=eval_users,
        time_limit_s=time_limit_s,
        seed=seed,
        device=device,
    )
    shared = {k: v for k, v in given.items() if v is not None}
    trainer: Any
    if stage == "sft":
        from training.sft import SFTTrainer

        extra: dict[str, Any] = dict(
            micro_batch=micro_batch,
            lora_top_layers=lora_top_layers,
            kd_weight=kd_weight,
            kd_candidates=kd_candidates,
            kd_teacher=kd_teacher,
            kd_tau=kd_tau,
            rec_weight=rec_weight,
            item_weight=item_weight,
            item_batch=item_batch,
            item_warmup_steps=item_warmup_steps,
            train_top_layers=train_top_layers,
            user_pool=user_pool,
            lm_positions=lm_positions,
            bank_refresh_every=bank_refresh_every,
        )
        trainer = SFTTrainer(
            SFTConfig(**shared, **extra), model_dir, data, out, templates, resume=resume, init_adapter=init_adapter
        )
    else:
        from training.recpo import RecPOTrainer

        extra = dict(
            group_size=group_size,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            beta=beta,
            ppo_epochs=ppo_epochs,
            eval_max_new_tokens=eval_max_new_tokens,
            patience=patience,
            gradient_checkpointing=gradient_checkpointing,
            no_reasoning=no_reasoning,
            reward=reward,
            advantage=advantage,
        )
        trainer = RecPOTrainer(
            RecPOConfig(**shared, **extra), model_dir, data, out, templates, resume=resume, init_adapter=init_adapter
        )
    summary: dict[str, Any] = trainer.train()
    typer.echo(json.dumps(summary, indent=2))
    typer.echo(f"export with: r2ec export --base-model {model_dir} --adapter {out / 'adapter'} --catalog {data} ...")
