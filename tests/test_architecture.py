"""The layering holds: the core imports nothing above it, and the service does not depend on the exporter."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ABOVE_CORE = {"service", "model_export", "training", "loadtests", "entrypoints"}


def imported_packages(package: str, root: Path = ROOT) -> dict[str, set[str]]:
    """Top-level packages each module of ``package`` imports (at any depth: lazy imports count)."""
    out: dict[str, set[str]] = {}
    for path in sorted((root / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        out[path.relative_to(root).as_posix()] = names
    return out


def test_the_core_imports_nothing_above_it():
    bad = {m: sorted(n & ABOVE_CORE) for m, n in imported_packages("r2ec").items() if n & ABOVE_CORE}
    assert not bad, bad


def test_the_service_does_not_import_the_exporter_or_entry_points():
    above = {"model_export", "training", "loadtests", "entrypoints"}
    bad = {m: sorted(n & above) for m, n in imported_packages("service").items() if n & above}
    assert not bad, bad


def test_nothing_imports_the_entry_points():
    for package in ("r2ec", "service", "model_export", "training", "loadtests"):
        bad = {m for m, n in imported_packages(package).items() if "entrypoints" in n}
        assert not bad, bad


def test_the_checker_sees_lazy_imports(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "m.py").write_text("def f():\n    from service.app import create_app\n    import training.sft\n")
    assert imported_packages("pkg", tmp_path) == {"pkg/m.py": {"service", "training"}}
