"""Paths as records may carry them: files the project writes (results, run configs) name no machine's directories."""

from __future__ import annotations

import os
from pathlib import Path


def r2ec_home() -> Path:
    """Where the project keeps what it builds or measures for this machine (``R2EC_HOME``, default ~/.cache/r2ec)."""
    return Path(os.environ.get("R2EC_HOME", Path.home() / ".cache" / "r2ec"))


def public_path(path: Path, root: Path | None = None) -> str:
    """``path`` relative to ``root`` (a checkout) or as ``~/...`` under the home directory, else its last component."""
    resolved = path.expanduser().resolve()
    bases = ([(root.resolve(), "")] if root is not None else []) + [(Path.home().resolve(), "~/")]
    for base, prefix in bases:
        try:
            return prefix + resolved.relative_to(base).as_posix()
        except ValueError:
            continue
    return resolved.name
