"""``r2ec train --device``: what ``auto`` resolves to, and a GPU asked for where torch sees none."""

from __future__ import annotations

import pytest
import torch
import typer

from entrypoints.train import _device_name_ok, _train_device


def test_auto_takes_the_gpu_only_where_torch_sees_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _train_device("auto") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert _train_device("auto") == "cuda"
    assert _train_device("cuda:1") == "cuda:1"


def test_a_gpu_asked_for_without_one_is_refused(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(typer.Exit):
        _train_device("cuda")
    assert "torch sees no GPU" in capsys.readouterr().err


@pytest.mark.parametrize(("name", "ok"), [("auto", True), ("cpu", True), ("cuda", True), ("cuda:0", True),
                                          ("cuda:x", False), ("tpu", False), ("", False)])  # fmt: skip
def test_device_names(name, ok):
    assert _device_name_ok(name) is ok
