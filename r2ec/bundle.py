"""The serving bundle: one directory that carries a trained checkpoint into serving.

Layout (format version 1)::

    manifest.json      identity, templates, tau, dims, counts, index spec, sha256 + size of every other file
    model/             Hugging Face model directory (merged weights + tokenizer), loadable by vLLM and transformers
    catalog.jsonl      items in row order of the vectors
    item_vectors.npy   float32 (n_items, dim), L2-normalised
    index.faiss        FAISS index over item_vectors (inner product)

This module reads and verifies bundles (the service and the evaluator need nothing else); writing them is
``model_export.bundle``'s job. ``load_bundle`` verifies every checksum and every cross-reference (counts, dims,
index size) and refuses with a message naming the file and the problem.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np

from r2ec.catalog import Catalog
from r2ec.evidence import EVIDENCE_FILE, Transitions
from r2ec.index import IndexSpec, load_index
from r2ec.templates import GenerationDefaults, PromptTemplates

if TYPE_CHECKING:
    from r2ec.engine.base import Engine
    from r2ec.recommender import Recommender
    from r2ec.scoring import Ranker

FORMAT = "r2ec-bundle"
FORMAT_VERSION = 2  # 2: bundle_version digests the whole manifest (1: files, templates and tau only)
READABLE_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
MODEL_DIR = "model"
CATALOG = "catalog.jsonl"
VECTORS = "item_vectors.npy"
INDEX = "index.faiss"
EXAMPLES = "examples.json"


class BundleError(ValueError):
    """A bundle is missing, corrupt or inconsistent. The message says which file and what is wrong."""


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
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
    def evidence(self) -> Transitions | None:
        """The co-interaction table for prompt evidence, if this bundle carries one (checksummed like the rest)."""
        if EVIDENCE_FILE not in self.manifest["files"]:
            return None
        return Transitions.load(self.root / EVIDENCE_FILE)

    @cached_property
    def examples(self) -> list[dict[str, Any]]:
        """Example histories of real users (``examples.json``, optional): what a demo page offers to load."""
        if EXAMPLES not in self.manifest["files"]:
            return []
        data: list[dict[str, Any]] = json.loads((self.root / EXAMPLES).read_text(encoding="utf-8"))
        return data

    def ranker(self) -> Ranker:
        from r2ec.scoring import Ranker

        return Ranker(self.vectors, self.index, self.tau)

    def recommender(self, engine: Engine, conclusion: str | None = None) -> Recommender:
        """The pipeline over this bundle's catalog, templates, vectors, evidence and tokenizer, on ``engine``
        (``conclusion``: None = this bundle's generation default)."""
        from r2ec.recommender import Recommender

        return Recommender.from_bundle(self, engine, conclusion)

    @cached_property
    def tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(self.model_dir))


# The record of when and where a bundle was made: not part of what it is.
_PROVENANCE = ("bundle_version", "created_at", "created_by")


def manifest_identity(manifest: dict[str, Any]) -> str:
    """The bundle version: a digest of everything the manifest says about the bundle (file checksums, templates,
    tau, serving defaults, model, index, evidence, ...), so that a manifest edited or corrupted after export no
    longer matches its own version. Format 1 digested the files, templates and tau only."""
    if manifest.get("format_version") == 1:
        files = {k: v["sha256"] for k, v in manifest["files"].items()}
        digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode())
        digest.update(json.dumps(manifest["templates"], sort_keys=True).encode())
        digest.update(str(manifest["tau"]).encode())
        return digest.hexdigest()[:16]
    body = {k: v for k, v in manifest.items() if k not in _PROVENANCE}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


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
    if manifest.get("format_version") not in READABLE_VERSIONS:
        readable = ", ".join(map(str, READABLE_VERSIONS))
        raise _fail(
            root, f"format version {manifest.get('format_version')!r} is not supported (this build reads {readable})"
        )
    for key in ("bundle_version", "templates", "tau", "vectors", "index", "files", "model", "counts"):
        if key not in manifest:
            raise _fail(root, f"{MANIFEST} lacks {key!r}")
    try:
        identity = manifest_identity(manifest)
        PromptTemplates.from_dict(manifest["templates"])
        GenerationDefaults.from_dict(manifest.get("generation"))
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise _fail(root, f"{MANIFEST} is malformed ({exc})") from None
    if identity != manifest["bundle_version"]:
        raise _fail(root, f"{MANIFEST} does not match its bundle_version (edited or corrupted after export)")
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
