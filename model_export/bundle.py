"""The serving bundle: one directory that carries a trained checkpoint into serving.

Layout (format version 1)::

    manifest.json      identity, templates, tau, dims, counts, index spec, sha256 + size of every other file
    model/             Hugging Face model directory (merged weights + tokenizer), loadable by vLLM and transformers
    catalog.jsonl      items in row order of the vectors
    item_vectors.npy   float32 (n_items, dim), L2-normalised
    index.faiss        FAISS index over item_vectors (inner product)

Bundles are written into a temporary sibling directory and renamed into place, so a crash never leaves a
half-written bundle under the final name. ``load_bundle`` verifies every checksum and every cross-reference
(counts, dims, index size) and refuses with a message naming the file and the problem.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from r2ec.catalog import Catalog
from r2ec.evidence import EVIDENCE_FILE, CoInteractions
from r2ec.index import IndexSpec, load_index
from r2ec.templates import GenerationDefaults, PromptTemplates

FORMAT = "r2ec-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MODEL_DIR = "model"
CATALOG = "catalog.jsonl"
VECTORS = "item_vectors.npy"
INDEX = "index.faiss"


class BundleError(ValueError):
    """A bundle is missing, corrupt or inconsistent. The message says which file and what is wrong."""


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


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


@dataclass
class Bundle:
    root: Path
    manifest: dict[str, Any]
    catalog: Catalog
    vectors: np.ndarray
    index: faiss.Index

    @property
    def model_dir(self) -> Path:
        return self.root / MODEL_DIR

    @property
    def version(self) -> str:
        return str(self.manifest["bundle_version"])

    @property
    def name(self) -> str:
        return str(self.manifest.get("name", self.root.name))

    @property
    def tau(self) -> float:
        return float(self.manifest["tau"])

    @property
    def dim(self) -> int:
        return int(self.manifest["vectors"]["dim"])

    @property
    def templates(self) -> PromptTemplates:
        return PromptTemplates.from_dict(self.manifest["templates"])

    @property
    def generation(self) -> GenerationDefaults:
        """Serving defaults the exporter recorded (older bundles: the built-in defaults)."""
        return GenerationDefaults.from_dict(self.manifest.get("generation"))

    @property
    def index_spec(self) -> IndexSpec:
        return IndexSpec.from_dict(self.manifest["index"]["spec"])

    @cached_property
    def evidence(self) -> CoInteractions | None:
        """The co-interaction table for prompt evidence, if this bundle carries one (checksummed like the rest)."""
        if EVIDENCE_FILE not in self.manifest["files"]:
            return None
        return CoInteractions.load(self.root / EVIDENCE_FILE)

    def ranker(self) -> Any:
        from r2ec.scoring import Ranker

        return Ranker(self.vectors, self.index, self.tau)

    def recommender(self, engine: Any) -> Any:
        """The pipeline over this bundle's catalog, templates, vectors and tokenizer, on ``engine``."""
        from r2ec.recommender import Recommender

        return Recommender(engine, self.catalog, self.templates, self.ranker(), self.tokenizer, self.evidence)

    @cached_property
    def tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(self.model_dir))


def _fail(root: Path, what: str) -> BundleError:
    return BundleError(f"bundle {root}: {what}")


def read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    if not root.is_dir():
        raise _fail(root, "not a directory")
    if not path.is_file():
        raise _fail(root, f"{MANIFEST} is missing (not a bundle, or an interrupted export)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(root, f"{MANIFEST} is not valid JSON ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise _fail(root, f"{MANIFEST} has format {manifest.get('format')!r}, expected {FORMAT!r}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise _fail(
            root,
            f"format version {manifest.get('format_version')!r} is not supported (this build reads {FORMAT_VERSION})",
        )
    for key in ("bundle_version", "templates", "tau", "vectors", "index", "files", "model", "counts"):
        if key not in manifest:
            raise _fail(root, f"{MANIFEST} lacks {key!r}")
    return manifest


def verify_files(root: Path, manifest: dict[str, Any], checksums: bool = True) -> None:
    expected: dict[str, dict[str, Any]] = manifest["files"]
    for rel in (CATALOG, VECTORS, INDEX, f"{MODEL_DIR}/config.json"):
        if rel not in expected:
            raise _fail(root, f"manifest does not list required file {rel}")
    for rel, meta in expected.items():
        path = root / rel
        if not path.is_file():
            raise _fail(root, f"file {rel} is missing")
        size = path.stat().st_size
        if size != meta["size"]:
            raise _fail(root, f"file {rel} has {size} bytes, manifest says {meta['size']} (truncated or replaced)")
        if checksums:
            actual = sha256_file(path)
            if actual != meta["sha256"]:
                raise _fail(root, f"file {rel} is corrupt: sha256 {actual[:12]}… != manifest {meta['sha256'][:12]}…")
    extra = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} - set(expected) - {MANIFEST}
    if extra:
        raise _fail(root, f"files not in the manifest: {sorted(extra)[:5]}")


def load_bundle(root: Path | str, verify: bool = True) -> Bundle:
    """Load and check a bundle. ``verify=False`` skips the sha256 pass (sizes and cross-checks still run)."""
    root = Path(root)
    manifest = read_manifest(root)
    verify_files(root, manifest, checksums=verify)
    try:
        catalog = Catalog.read_jsonl(root / CATALOG)
    except (ValueError, KeyError, json.JSONDecodeError) as exc:
        raise _fail(root, f"{CATALOG} is unreadable ({exc})") from None
    try:
        vectors = np.load(root / VECTORS, allow_pickle=False)
    except ValueError as exc:
        raise _fail(root, f"{VECTORS} is unreadable ({exc})") from None
    dim = int(manifest["vectors"]["dim"])
    if vectors.dtype != np.float32 or vectors.ndim != 2:
        raise _fail(root, f"{VECTORS} must be 2-d float32, found {vectors.ndim}-d {vectors.dtype}")
    if vectors.shape != (len(catalog), dim):
        raise _fail(
            root, f"{VECTORS} has shape {vectors.shape}, expected ({len(catalog)}, {dim}) from catalog and manifest"
        )
    if manifest["counts"].get("items") != len(catalog):
        raise _fail(root, f"manifest counts {manifest['counts'].get('items')} items, {CATALOG} has {len(catalog)}")
    hidden = manifest["model"].get("hidden_size")
    if hidden is not None and int(hidden) != dim:
        raise _fail(root, f"model hidden size {hidden} does not match vector dim {dim}")
    config = json.loads((root / MODEL_DIR / "config.json").read_text())
    config_hidden = config.get("hidden_size") or config.get("text_config", {}).get("hidden_size")
    if config_hidden is not None and int(config_hidden) != dim:
        raise _fail(root, f"model/config.json hidden_size {config_hidden} does not match vector dim {dim}")
    spec = IndexSpec.from_dict(manifest["index"]["spec"])
    try:
        index = load_index(root / INDEX, spec)
    except RuntimeError as exc:
        raise _fail(root, f"{INDEX} is unreadable ({str(exc).splitlines()[0]})") from None
    if index.ntotal != len(catalog) or index.d != dim:
        raise _fail(root, f"{INDEX} holds {index.ntotal}x{index.d} vectors, expected {len(catalog)}x{dim}")
    return Bundle(root, manifest, catalog, vectors, index)


def finalize_bundle(staging: Path, out: Path, manifest: dict[str, Any], force: bool = False) -> Path:
    """Checksum ``staging``, write its manifest last, then rename it to ``out`` in one step."""
    files = file_table(staging)
    manifest = dict(manifest)
    manifest["files"] = files
    identity = hashlib.sha256(json.dumps({k: v["sha256"] for k, v in files.items()}, sort_keys=True).encode())
    identity.update(json.dumps(manifest["templates"], sort_keys=True).encode())
    identity.update(str(manifest["tau"]).encode())
    manifest["bundle_version"] = identity.hexdigest()[:16]
    manifest["created_at"] = datetime.now(UTC).isoformat(timespec="seconds")
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
