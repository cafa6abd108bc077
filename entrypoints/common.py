"""What every command shares: the typer apps, one-line argument errors, logging and thread set-up."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

if multiprocessing.current_process().name == "MainProcess":
    # The command's own threads sleep when idle (they share the machine's cores with the model's). Not in a
    # child that re-imports this module as its ``__main__`` (a spawned process: vLLM's engine core): it inherits
    # the variable from the command, or runs without it where the engine removed it for the forward's threads
    # (``vllm_omp_wait_policy``).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

app = typer.Typer(help="r2ec-serve: reasoning recommenders (R²ec) from checkpoint to HTTP.", no_args_is_help=True)
data_app = typer.Typer(help="Build datasets in the project's format (docs/data-format.md).", no_args_is_help=True)
bundle_app = typer.Typer(help="Inspect and verify serving bundles.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(bundle_app, name="bundle")


def setup_logging(level: str = "info") -> None:
    from r2ec import logs

    logs.setup(level)


def fail(message: str) -> NoReturn:
    """One line on stderr and exit status 2: argument problems are reported before any heavy work starts."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def need_file(path: Path, what: str) -> None:
    if not path.is_file():
        fail(f"{what} {path} does not exist")


def need_dataset(path: Path) -> None:
    if not (path / "dataset.json").is_file():
        fail(f"{path} is not a dataset directory (make one with r2ec data ...)")


def need_bundle(path: Path) -> None:
    if not (path / "manifest.json").is_file():
        fail(f"{path} is not a bundle directory (no manifest.json)")


def threads_for(threads: int | None) -> None:
    import torch

    from r2ec.engine.selection import usable_cores

    torch.set_num_threads(threads or max(1, min(usable_cores(), 16)))


def mask_for(protocol: str, mask: str | None) -> Any:
    from r2ec.exclusion import MASKS

    if protocol not in ("loo", "temporal"):
        fail(f"unknown protocol {protocol!r} (loo or temporal)")
    chosen = mask or ("seen" if protocol == "loo" else "window")
    if chosen not in MASKS:
        fail(f"unknown mask {chosen!r} (seen, window or none)")
    return chosen


# Options several commands share, declared once (a command that takes one says so with its type).
DataOption = Annotated[Path, typer.Option(help="Dataset directory (r2ec data ...).")]
ProtocolOption = Annotated[str, typer.Option(help="loo (leave-one-out) or temporal (the paper's).")]
SplitOption = Annotated[str, typer.Option(help="valid or test.")]
MaskOption = Annotated[str | None, typer.Option(help="seen (default for loo), window (default for temporal) or none.")]
LimitOption = Annotated[int | None, typer.Option(help="A fixed random subset of this many samples (seed 0).")]
ThreadsOption = Annotated[int | None, typer.Option(help="Torch CPU threads.")]
