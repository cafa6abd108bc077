"""The embedded default: the shipped adapter merges into a bundle that verifies; a stale build is rebuilt."""

from __future__ import annotations

import json

import pytest

from model_export import demo, smollm2
from model_export.bundle import load_bundle
from model_export.evidence import build_evidence
from model_export.export import read_catalog
from tests.helpers import export_tiny


@pytest.fixture(scope="module")
def smollm2_dir(tmp_path_factory):
    return smollm2.convert(tmp_path_factory.mktemp("smollm2") / "model")


def test_the_shipped_adapter_merges_into_a_bundle_whose_checksums_verify(smollm2_dir, dataset_dir, tmp_path):
    catalog = read_catalog(dataset_dir)
    evidence, source = build_evidence(dataset_dir, catalog, demo.DEMO_PROTOCOL)
    out = export_tiny(
        smollm2_dir, dataset_dir, tmp_path / "demo", "movies_evidence",
        adapter=demo.DEMO_ADAPTER, evidence=evidence, evidence_source=source, recipe=demo.demo_recipe(),
    )  # fmt: skip
    bundle = load_bundle(out, verify=True)
    model = bundle.manifest["model"]
    assert model["adapter_config"]["trained_on"] == "SmolLM2-135M-Instruct" and model["adapter_config"]["rank"] > 0
    assert bundle.manifest["recipe"] == demo.demo_recipe() and bundle.evidence is not None
    assert bundle.templates.evidence_candidates > 0 and len(bundle.catalog) == len(catalog)


def test_a_bundle_of_another_recipe_is_rebuilt(tmp_path, monkeypatch):
    built: list[tuple[str, bool]] = []

    def build(out, force=False, untrained=False):
        built.append((out.name, force))
        return out

    monkeypatch.setattr(demo, "build_demo_bundle", build)
    current = tmp_path / "current"
    current.mkdir()
    (current / "manifest.json").write_text(json.dumps({"recipe": demo.demo_recipe()}))
    assert demo.ensure_demo_bundle(current) == current and built == []  # up to date: served as it is
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / "manifest.json").write_text(json.dumps({"recipe": "an older adapter"}))
    demo.ensure_demo_bundle(stale)
    assert built == [("stale", True)]
    demo.ensure_demo_bundle(tmp_path / "missing")
    assert built[-1] == ("missing", False)
    assert demo.demo_recipe() != demo.demo_recipe(untrained=True)
