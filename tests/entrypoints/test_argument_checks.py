"""Bad arguments are refused before any heavy work: one line on stderr, exit 2, torch and vLLM never imported."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

PROBE = (
    "import sys\n"
    "from entrypoints.cli import app\n"
    "try:\n"
    "    app(sys.argv[1:], standalone_mode=True)\n"
    "finally:\n"
    "    heavy = sorted(m for m in ('torch', 'vllm', 'transformers') if m in sys.modules)\n"
    "    print('HEAVY=' + ','.join(heavy), file=sys.stdout)\n"
)


def run_cli(args: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60)
    return proc, time.perf_counter() - started


def cases(tmp: Path, bundle: Path, data: Path) -> dict[str, list[str]]:
    missing = str(tmp / "missing")
    return {
        "export onto an existing bundle": [
            "export", "--base-model", str(bundle / "model"), "--catalog", str(data), "--domain", "movies",
            "--out", str(bundle),
        ],
        "export of a missing base model": [
            "export", "--base-model", missing, "--catalog", str(data), "--domain", "movies", "--out", str(tmp / "b"),
        ],
        "export with an unknown domain": [
            "export", "--base-model", str(bundle / "model"), "--catalog", str(data), "--domain", "nope",
            "--out", str(tmp / "b"),
        ],
        "bench with missing data": ["bench", "--bundle", str(bundle), "--data", missing],
        "bench with a missing bundle": ["bench", "--bundle", missing, "--data", str(data)],
        "data amazon with missing files": [
            "data", "amazon", "--ratings", missing, "--meta", missing, "--category", "Video_Games", "--out", missing,
        ],
        "evaluate with a missing bundle": ["evaluate", "--bundle", missing, "--data", str(data)],
        "evaluate with an unknown mask": ["evaluate", "--bundle", str(bundle), "--data", str(data), "--mask", "x"],
        "baseline with an unknown method": ["baseline", "nope", "--data", str(data)],
        "train with missing data": ["train", "--data", missing, "--out", str(tmp / "run")],
        "train on an unknown device": [
            "train", "--data", str(data), "--out", str(tmp / "run"), "--bundle", str(bundle), "--device", "tpu",
        ],
        "train with an unknown distillation teacher": [
            "train", "--stage", "sft", "--data", str(data), "--out", str(tmp / "run"), "--bundle", str(bundle),
            "--kd-teacher", "uniform",
        ],
        "train with a negative distillation temperature": [
            "train", "--stage", "sft", "--data", str(data), "--out", str(tmp / "run"), "--bundle", str(bundle),
            "--kd-tau", "-0.01",
        ],
        "train with a distillation temperature that is not a number": [
            "train", "--stage", "sft", "--data", str(data), "--out", str(tmp / "run"), "--bundle", str(bundle),
            "--kd-tau", "nan",
        ],
    }  # fmt: skip


@pytest.mark.parametrize(
    "case",
    [
        "export onto an existing bundle",
        "export of a missing base model",
        "export with an unknown domain",
        "bench with missing data",
        "bench with a missing bundle",
        "data amazon with missing files",
        "evaluate with a missing bundle",
        "evaluate with an unknown mask",
        "baseline with an unknown method",
        "train with missing data",
        "train on an unknown device",
        "train with an unknown distillation teacher",
        "train with a negative distillation temperature",
        "train with a distillation temperature that is not a number",
    ],
)
def test_refused_at_once_with_one_line(case, tiny_bundle, dataset_dir, tmp_path):
    proc, seconds = run_cli(cases(tmp_path, tiny_bundle, dataset_dir)[case])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout.strip().endswith("HEAVY="), f"heavy modules imported before the check: {proc.stdout}"
    assert seconds < 10, seconds  # a loose bound for loaded CI machines; the HEAVY check is the real proof


def test_export_refuses_an_adapter_for_another_base_before_merging(tmp_path, catalog, dataset_dir):
    """The adapter check reads shapes only (meta device): one line, exit 2, no bundle, no merge."""
    from tests.archs import authors_adapter, build_tiny_arch

    gemma = build_tiny_arch(tmp_path / "gemma", catalog, "gemma2")
    qwen_adapter = authors_adapter(build_tiny_arch(tmp_path / "qwen", catalog, "qwen2"), tmp_path / "qwen-adapter")
    args = ["export", "--base-model", str(gemma), "--adapter", str(qwen_adapter), "--catalog", str(dataset_dir)]
    proc, _ = run_cli([*args, "--domain", "movies", "--out", str(tmp_path / "b")])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip() and line.startswith("error: ")]
    assert len(lines) == 1 and "does not fit the base model" in lines[0] and "Gemma2ForCausalLM" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "b").exists()


def test_the_cli_knows_every_baseline():
    from entrypoints.evaluation import BASELINES
    from model_export.baselines.run import METHODS

    assert BASELINES == METHODS
