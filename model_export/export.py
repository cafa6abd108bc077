"""``r2ec export``: base model [+ PEFT LoRA adapter] + catalog + templates -> serving bundle.

Encoding is the long part, so it is done in chunks saved under a work directory keyed by (model, catalog,
templates): an interrupted export restarted with the same inputs resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

import r2ec
from model_export.adapter import check_adapter, merge_adapter
from model_export.bundle import (
    CATALOG,
    EXAMPLES,
    INDEX,
    MODEL_DIR,
    VECTORS,
    BundleError,
    finalize_bundle,
    model_hash,
    sha256_file,
    staging_dir,
)
from r2ec import logs
from r2ec.bundle import FORMAT_VERSION
from r2ec.catalog import Catalog
from r2ec.chat import ChatRenderer, control_pattern, control_text_found, template_identity
from r2ec.encoder import encode, pad_id_of
from r2ec.evidence import EVIDENCE_FILE, Transitions
from r2ec.index import IndexSpec, build_index, recall_at, save_index
from r2ec.models import load_causal_lm
from r2ec.paths import public_path
from r2ec.prompts import item_text
from r2ec.scoring import TAU
from r2ec.templates import GenerationDefaults, PromptTemplates, domain_generation

log = logs.get(__name__)
_MODEL_FILES = ("*.json", "*.safetensors", "*.jinja", "*.model", "*.txt", "*.py")


@dataclass
class ExportConfig:
    base_model: Path
    catalog: Path
    templates: PromptTemplates
    domain: str
    out: Path
    adapter: Path | None = None
    index: IndexSpec = field(default_factory=IndexSpec)
    encode_dtype: str = "float32"
    device: str = "cpu"
    batch_size: int = 16
    tau: float = TAU
    chunk_size: int = 256
    force: bool = False
    name: str | None = None
    progress: bool = True
    generation: GenerationDefaults | None = None  # serving defaults; None = the domain's (domain_generation)
    evidence: Transitions | None = None  # co-interaction table for prompts whose templates enable evidence
    evidence_source: dict[str, Any] | None = None  # where the table came from (dataset, protocol), for the manifest
    examples: list[dict[str, Any]] | None = None  # example histories a demo page offers (examples.json)
    recipe: str | None = None  # fingerprint of what the bundle is built from, to tell a stale build (the demo's)


def read_catalog(path: Path) -> Catalog:
    """A catalog file (catalog.jsonl) or a dataset directory holding one."""
    if path.is_dir():
        path = path / "catalog.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"catalog {path} not found")
    return Catalog.read_jsonl(path)


def copy_model(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for pattern in _MODEL_FILES:
        for f in src.glob(pattern):
            if f.is_file():
                shutil.copy2(f, dst / f.name)
    if not (dst / "config.json").is_file():
        raise FileNotFoundError(f"{src} is not a Hugging Face model directory (no config.json)")


def _work_key(model_id: str, catalog_path: Path, templates: PromptTemplates, dtype: str) -> str:
    digest = hashlib.sha256()
    digest.update(model_id.encode())
    digest.update(sha256_file(catalog_path).encode())
    digest.update(json.dumps(templates.to_dict(), sort_keys=True).encode())
    digest.update(dtype.encode())
    return digest.hexdigest()[:16]


def check_catalog_text(catalog: Catalog, tokenizer: Any) -> None:
    """Refuse a catalog whose text holds a control token of ``tokenizer`` (``r2ec.chat.control_pattern``): the
    prompts that show it would be tokenised with that token in them (a title with ``<|im_end|>`` ends the user
    turn), in export, serving and evaluation alike."""
    pattern = control_pattern(tokenizer)
    found = []
    for item in catalog:
        token = control_text_found(pattern, (item.title, item.description, item.year, *item.genres))
        if token is not None:
            found.append(f"{item.item_id} ({token!r})")
    if found:
        more = f" and {len(found) - 5} more" if len(found) > 5 else ""
        raise ValueError(
            f"{len(found)} catalog items hold text the model's tokenizer reads as a control token, which would "
            f"break the chat format of every prompt showing them: items {', '.join(found[:5])}{more}; rewrite or "
            "remove that text in the catalog"
        )


def encode_catalog(
    model: Any,
    tokenizer: Any,
    catalog: Catalog,
    templates: PromptTemplates,
    work: Path,
    batch_size: int,
    chunk_size: int,
    show_progress: bool = True,
) -> np.ndarray:
    renderer = ChatRenderer(tokenizer, templates)
    pad = pad_id_of(tokenizer)
    work.mkdir(parents=True, exist_ok=True)
    chunks = []
    bar = tqdm(total=len(catalog), desc="encoding items", unit="item", disable=not show_progress)
    for start in range(0, len(catalog), chunk_size):
        part = work / f"chunk-{start:09d}.npy"
        items = catalog.items[start : start + chunk_size]
        if part.is_file():
            vectors = np.load(part)
        else:
            seqs = [renderer.item_sequence_ids(templates.item_prompt, item_text(it, templates)) for it in items]
            vectors = encode(model, seqs, pad, batch_size=batch_size)
            tmp = part.with_suffix(".tmp.npy")
            np.save(tmp, vectors)
            tmp.rename(part)
        chunks.append(vectors)
        bar.update(len(items))
    bar.close()
    return np.ascontiguousarray(np.concatenate(chunks), dtype=np.float32)


def run_export(cfg: ExportConfig) -> Path:
    started = time.perf_counter()
    from transformers import AutoTokenizer

    if cfg.out.exists() and not cfg.force:  # checked before minutes of merging and encoding, not after
        raise BundleError(f"{cfg.out} already exists (use --force to replace it)")
    catalog = read_catalog(cfg.catalog)
    catalog_file = cfg.catalog / "catalog.jsonl" if cfg.catalog.is_dir() else cfg.catalog
    if cfg.templates.evidence_candidates > 0 and cfg.evidence is None:
        raise ValueError("these templates show collaborative evidence: give the interactions to build it from")
    if cfg.evidence is not None and cfg.evidence.neighbors.shape[0] != len(catalog):
        raise ValueError(f"evidence table has {cfg.evidence.neighbors.shape[0]} rows, catalog {len(catalog)} items")
    # Before minutes of merging: an adapter that does not fit the base model is refused with the reason, and so
    # is catalog text that the model's tokenizer would read as its control tokens.
    adapter_info = None if cfg.adapter is None else check_adapter(cfg.base_model, cfg.adapter)
    check_catalog_text(catalog, AutoTokenizer.from_pretrained(str(cfg.base_model)))
    staging = staging_dir(cfg.out)
    try:
        model_dir = staging / MODEL_DIR
        if cfg.adapter is not None:
            log.info("merging adapter", extra={"base": str(cfg.base_model), "adapter": str(cfg.adapter)})
            merge_adapter(cfg.base_model, cfg.adapter, model_dir)
        else:
            copy_model(cfg.base_model, model_dir)
        weights_id = model_hash(model_dir)
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        model = load_causal_lm(model_dir, cfg.encode_dtype, cfg.device)
        work = cfg.out.with_name(
            f".{cfg.out.name}.encode-{_work_key(weights_id, catalog_file, cfg.templates, cfg.encode_dtype)}"
        )
        log.info("encoding catalog", extra={"items": len(catalog), "work_dir": str(work)})
        vectors = encode_catalog(
            model, tokenizer, catalog, cfg.templates, work, cfg.batch_size, cfg.chunk_size, cfg.progress
        )
        renderer = ChatRenderer(tokenizer, cfg.templates)
        truncated = sum(
            renderer.item_overflows(cfg.templates.item_prompt, item_text(it, cfg.templates)) for it in catalog
        )
        catalog.write_jsonl(staging / CATALOG)
        np.save(staging / VECTORS, vectors)
        index = build_index(vectors, cfg.index)
        save_index(index, staging / INDEX)
        if cfg.evidence is not None:
            cfg.evidence.save(staging / EVIDENCE_FILE)
        if cfg.examples:
            (staging / EXAMPLES).write_text(json.dumps(cfg.examples, indent=1, ensure_ascii=False) + "\n")
        index_info: dict[str, Any] = {"spec": cfg.index.to_dict(), "ntotal": int(index.ntotal)}
        if cfg.index.kind != "flat":
            rng = np.random.default_rng(0)
            queries = vectors[rng.choice(len(vectors), size=min(500, len(vectors)), replace=False)]
            index_info["recall_at_10_vs_exact"] = recall_at(index, vectors, queries, k=min(10, len(vectors)))
            log.info("approximate index recall", extra={"recall@10": index_info["recall_at_10_vs_exact"]})
        config = json.loads((model_dir / "config.json").read_text())
        manifest: dict[str, Any] = {
            "format": "r2ec-bundle",
            "format_version": FORMAT_VERSION,
            "name": cfg.name or cfg.out.name,
            "domain": cfg.domain,
            "templates": cfg.templates.to_dict(),
            "generation": (cfg.generation or domain_generation(cfg.domain)).to_dict(),
            "tau": cfg.tau,
            "model": {
                # Names only: they are part of the bundle version, which must not change with the machine or the
                # directory an export ran in (where they came from is provenance, under created_by).
                "base": cfg.base_model.name,
                "adapter": None if cfg.adapter is None else cfg.adapter.name,
                "adapter_config": None if adapter_info is None else adapter_info.to_dict(),
                "hash": weights_id,
                "architecture": (config.get("architectures") or ["?"])[0],
                "hidden_size": int(vectors.shape[1]),
                "num_layers": config.get("num_hidden_layers"),
                "dtype": str(config.get("dtype") or config.get("torch_dtype") or "float32"),
                "tokenizer": type(tokenizer).__name__,
                "chat_template": template_identity(tokenizer),
                "vocab_size": len(tokenizer),
            },
            "vectors": {
                "dim": int(vectors.shape[1]),
                "dtype": "float32",
                "normalized": True,
                "encode_dtype": cfg.encode_dtype,
            },
            "index": index_info,
            "counts": {"items": len(catalog), "items_truncated": truncated},
            "recipe": cfg.recipe,
            "evidence": None
            if cfg.evidence is None
            else {"neighbors": int(cfg.evidence.neighbors.shape[1]), **(cfg.evidence_source or {})},
            "created_by": {
                "tool": f"r2ec {r2ec.__version__}",
                "python": platform.python_version(),
                "torch": torch.__version__,
                "device": cfg.device,
                # Relative to the working directory or ~, never the exporting machine's absolute paths: a bundle
                # is shipped to other machines.
                "base_model": public_path(cfg.base_model, Path.cwd()),
                "adapter": None if cfg.adapter is None else public_path(cfg.adapter, Path.cwd()),
                "seconds": round(time.perf_counter() - started, 1),
            },
        }
        out = finalize_bundle(staging, cfg.out, manifest, force=cfg.force)
        shutil.rmtree(work, ignore_errors=True)
        log.info(
            "bundle written",
            extra={"bundle": str(out), "items": len(catalog), "seconds": manifest["created_by"]["seconds"]},
        )
        return out
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
