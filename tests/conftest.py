"""Session fixtures: a tiny real model (SmolLM2's real tokenizer, random small weights), data and a bundle."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from tests.helpers import build_tiny_model, export_tiny, tiny_catalog, tiny_dataset

torch.set_num_threads(2)

REDIS_URL = os.environ.get("R2EC_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture(scope="session")
def smollm_tokenizer(tmp_path_factory: pytest.TempPathFactory):
    from transformers import AutoTokenizer

    from model_export.smollm2 import load_tokenizer

    out = tmp_path_factory.mktemp("tok")
    load_tokenizer().save_pretrained(str(out))  # type: ignore[attr-defined]
    return AutoTokenizer.from_pretrained(str(out))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, smollm_tokenizer) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"), smollm_tokenizer)


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32).eval()


@pytest.fixture(scope="session")
def catalog():
    return tiny_catalog()


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory, catalog) -> Path:
    out = tmp_path_factory.mktemp("tiny-data")
    tiny_dataset(catalog).save(out)
    return out


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, dataset_dir: Path) -> Path:

    out = tmp_path_factory.mktemp("bundles") / "tiny"
    return export_tiny(tiny_model_dir, dataset_dir, out)


def _redis_up(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
    except redis.exceptions.RedisError:
        return False


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The machine's Redis (started if it is down: it is a real dependency of these tests, never mocked)."""
    if not _redis_up(REDIS_URL):
        subprocess.run(
            [
                "redis-server",
                "--daemonize",
                "yes",
                "--bind",
                "127.0.0.1",
                "--port",
                "6379",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            check=False,
        )
        import time

        for _ in range(50):
            if _redis_up(REDIS_URL):
                break
            time.sleep(0.1)
    if not _redis_up(REDIS_URL):
        pytest.fail(f"Redis is not reachable at {REDIS_URL}")
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    return REDIS_URL
