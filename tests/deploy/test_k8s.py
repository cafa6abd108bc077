"""Every kustomize overlay renders and validates against the Kubernetes schemas, and keeps its promises."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = sorted(p.name for p in (ROOT / "k8s" / "overlays").iterdir() if p.is_dir())


def render(overlay: str) -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl (with kustomize) is not installed")
    out = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "k8s" / "overlays" / overlay)], check=True, capture_output=True, text=True
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def by_kind(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert found, f"no {kind} {name or ''}"
    return found[0]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_validates_against_kubernetes_schemas(overlay, tmp_path):
    docs = render(overlay)
    path = tmp_path / f"{overlay}.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    validator = Path(sys.executable).parent / "kubernetes-validate"
    result = subprocess.run([str(validator), "--strict", "-k", "1.32.0", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_promises(overlay):
    docs = render(overlay)
    dep = by_kind(docs, "Deployment", "r2ec")
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert pod["enableServiceLinks"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"] >= 300
    config = by_kind(docs, "ConfigMap")
    drain = float(config["data"]["R2EC_DRAIN_TIMEOUT_S"])
    pre_stop = float(c["lifecycle"]["preStop"]["exec"]["command"][1])
    assert pod["terminationGracePeriodSeconds"] >= drain + pre_stop
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"]["medium"] == "Memory"
    assert any(m["mountPath"] == "/bundle" and m["readOnly"] for m in c["volumeMounts"])
    if overlay.startswith("gpu"):
        res = c["resources"]
        assert res["requests"]["nvidia.com/gpu"] == res["limits"]["nvidia.com/gpu"] == "1"
        assert config["data"]["R2EC_BACKEND"] == "vllm"
    hpa = by_kind(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "r2ec_queue_depth"
    netpol = by_kind(docs, "NetworkPolicy")
    assert netpol["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "r2ec-redis"}
    assert netpol["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "r2ec"}
    redis = by_kind(docs, "Deployment", "r2ec-redis")["spec"]["template"]["spec"]["containers"][0]
    args = redis["args"]
    # The user-context promise: Redis is a store of record (AOF on a PersistentVolume, never evicting users).
    assert args[args.index("--appendonly") + 1] == "yes" and args[args.index("--maxmemory-policy") + 1] == "noeviction"
    rpod = by_kind(docs, "Deployment", "r2ec-redis")["spec"]["template"]["spec"]
    data = next(v for v in rpod["volumes"] if v["name"] == "data")
    claim = by_kind(docs, "PersistentVolumeClaim", data["persistentVolumeClaim"]["claimName"])
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    by_kind(docs, "PodDisruptionBudget")
    if overlay == "gpu-bundle-image":
        assert pod["initContainers"][0]["name"] == "bundle"
        assert not [d for d in docs if d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == "r2ec-bundle"]
    else:
        by_kind(docs, "PersistentVolumeClaim", "r2ec-bundle")


def _secret_values(doc: dict) -> dict[str, str]:
    return {**(doc.get("data") or {}), **(doc.get("stringData") or {})}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_apply_cannot_clobber_or_blank_the_operators_secret(overlay):
    """The documented order is: the operator creates r2ec-api-keys, then `kubectl apply -k`. An overlay that
    rendered that Secret would replace the operator's keys; one with an empty value would switch auth off."""
    docs = render(overlay)
    for doc in docs:
        if doc["kind"] == "Secret":
            empty = [k for k, v in _secret_values(doc).items() if v in ("", None)]
            assert not empty, f"{overlay}: Secret {doc['metadata']['name']} ships empty values {empty}"
    assert not [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == "r2ec-api-keys"], (
        f"{overlay} renders r2ec-api-keys: applying it would overwrite the operator's keys"
    )
    pod = by_kind(docs, "Deployment", "r2ec")["spec"]["template"]["spec"]
    refs = [e["secretRef"] for e in pod["containers"][0]["envFrom"] if "secretRef" in e]
    assert refs == [{"name": "r2ec-api-keys", "optional": False}], refs  # fail closed when it is missing


def test_the_documented_order_creates_the_secret_before_apply():
    text = (ROOT / "docs" / "deploy.md").read_text()
    create = text.index("create secret generic r2ec-api-keys")
    assert create < text.index("kubectl apply -k k8s/overlays/")
