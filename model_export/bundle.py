"""Writing serving bundles (the format and the reader live in ``r2ec.bundle``, which the service uses).

Bundles are written into a temporary sibling directory and renamed into place, so a crash never leaves a
half-written bundle under the final name; the manifest, with every file's sha256, is written last.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from r2ec.bundle import (  # re-exported: the exporter's callers read bundles too
    CATALOG,
    EXAMPLES,
    FORMAT,
    FORMAT_VERSION,
    INDEX,
    MANIFEST,
    MODEL_DIR,
    VECTORS,
    Bundle,
    BundleError,
    load_bundle,
    manifest_identity,
    read_manifest,
    sha256_file,
    verify_files,
)

__all__ = [
    "CATALOG",
    "EXAMPLES",
    "FORMAT",
    "FORMAT_VERSION",
    "INDEX",
    "MANIFEST",
    "MODEL_DIR",
    "VECTORS",
    "Bundle",
    "BundleError",
    "file_table",
    "finalize_bundle",
    "load_bundle",
    "model_hash",
    "read_manifest",
    "sha256_file",
    "staging_dir",
    "verify_files",
]


def file_table(root: Path) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file under ``root`` except the manifest, keyed by relative posix path."""
    table = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel == MANIFEST:
            continue
        table[rel] = {"sha256": sha256_file(path), "size": path.stat().st_size}
    return table


def model_hash(model_dir: Path) -> str:
    """Identity of the weights: sha256 over the sorted (name, sha256) of the weight files."""
    digest = hashlib.sha256()
    for path in sorted(model_dir.glob("*.safetensors")) + sorted(model_dir.glob("*.bin")):
        digest.update(path.name.encode())
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def finalize_bundle(staging: Path, out: Path, manifest: dict[str, Any], force: bool = False) -> Path:
    """Checksum ``staging``, write its manifest last, then rename it to ``out`` in one step."""
    files = file_table(staging)
    manifest = dict(manifest)
    manifest["files"] = files
    manifest["format_version"] = FORMAT_VERSION
    manifest["created_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    manifest["bundle_version"] = manifest_identity(manifest)
    tmp_manifest = staging / (MANIFEST + ".tmp")
    tmp_manifest.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp_manifest, staging / MANIFEST)
    if out.exists():
        if not force:
            raise BundleError(f"{out} already exists (use --force to replace it)")
        trash = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(out, trash)
        os.replace(staging, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(staging, out)
    return out


def staging_dir(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    path = out.with_name(f".{out.name}.staging-{uuid.uuid4().hex[:8]}")
    path.mkdir()
    return path
