"""Records name no machine's directories: public_path keeps only what any machine would read the same way."""

from __future__ import annotations

from pathlib import Path

from r2ec.paths import public_path


def test_a_path_under_the_root_is_relative_to_it(tmp_path):
    assert public_path(tmp_path / "results" / "x.json", root=tmp_path) == "results/x.json"


def test_a_path_under_home_starts_with_a_tilde():
    assert public_path(Path.home() / ".cache" / "r2ec" / "models" / "m") == "~/.cache/r2ec/models/m"
    assert public_path(Path("~/data")) == "~/data"


def test_any_other_path_keeps_its_last_component_only(tmp_path):
    if tmp_path.resolve().is_relative_to(Path.home().resolve()):
        return  # a home-based temp dir is covered above
    assert public_path(tmp_path / "model") == "model"
