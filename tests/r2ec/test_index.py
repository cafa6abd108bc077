"""Where the FAISS index lives: auto picks the CPU here and says so; gpu without one is refused at start."""

from __future__ import annotations

import subprocess
import sys

import httpx
import numpy as np
import pytest

from r2ec.index import IndexDeviceError, IndexSpec, build_index, faiss_gpus, place_index
from tests.service.conftest import make_server


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_auto_stays_on_the_cpu_without_a_gpu_and_ranks_the_same(kind):
    assert faiss_gpus() == 0  # CI has no GPU; a GPU machine runs the bench's GPU rows instead
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((400, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    spec = IndexSpec(kind=kind, nlist=8)
    index = build_index(vectors, spec)
    placed, where = place_index(index, spec, "auto")
    assert where.device == "cpu" and "no GPU" in where.reason
    assert placed is index
    q = vectors[:5]
    assert (placed.search(q, 10)[1] == index.search(q, 10)[1]).all()
    assert place_index(index, spec, "cpu")[1].reason == "index_device=cpu"


def test_gpu_without_one_is_refused():
    spec = IndexSpec()
    index = build_index(np.eye(4, dtype=np.float32), spec)
    with pytest.raises(IndexDeviceError, match="no GPU"):
        place_index(index, spec, "gpu")


def test_serve_with_gpu_index_fails_at_start_with_a_clear_message(tiny_bundle):
    proc = subprocess.run(
        [sys.executable, "-m", "entrypoints.cli", "serve", "--bundle", str(tiny_bundle), "--index-device", "gpu"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "index_device=gpu" in proc.stderr and "no GPU" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_info_and_ready_say_where_the_index_lives(tiny_bundle):
    srv = make_server(tiny_bundle).start()
    try:
        info = httpx.get(srv.url + "/info").json()["bundle"]["index"]
        ready = httpx.get(srv.url + "/ready").json()["index"]
        assert info["device"] == ready["device"] == "cpu"
        assert "no GPU" in ready["reason"]
    finally:
        srv.stop()
    srv = make_server(tiny_bundle, index_device="gpu").start(wait_ready=False)
    try:
        for _ in range(100):
            body = httpx.get(srv.url + "/ready").json()
            if body.get("error"):
                break
        assert httpx.get(srv.url + "/ready").status_code == 503
        assert "no GPU" in body["error"]
    finally:
        srv.stop()


def test_ivf_trains_on_a_seeded_sample_of_a_large_catalog():
    from r2ec.index import IVF_TRAIN_PER_LIST, exact_neighbours, ivf_training_sample, recall_at

    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((3000, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    sample = ivf_training_sample(vectors, nlist=8)
    assert sample.shape == (8 * IVF_TRAIN_PER_LIST, 16)
    # Distinct rows of the catalog, the same ones every time (the seed is fixed).
    assert len({row.tobytes() for row in sample}) == len(sample)
    assert {row.tobytes() for row in sample} <= {row.tobytes() for row in vectors}
    assert (ivf_training_sample(vectors, nlist=8) == sample).all()
    assert ivf_training_sample(vectors[:300], nlist=8).shape == (300, 16)  # small catalogs train on every row
    spec = IndexSpec(kind="ivf", nlist=8, nprobe=8)
    a, b = build_index(vectors, spec), build_index(vectors, spec)
    assert a.ntotal == 3000 and a.is_trained
    q = vectors[:20]
    assert (a.search(q, 10)[1] == b.search(q, 10)[1]).all()  # same sample, same index
    truth = exact_neighbours(vectors, q, 10)
    assert recall_at(a, vectors, q, 10, truth=truth) == recall_at(a, vectors, q, 10) == 1.0  # nprobe = nlist
