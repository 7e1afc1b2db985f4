"""The supply-chain command's SBOM: CycloneDX JSON of this environment, written offline by cyclonedx-bom (skipped without it)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json

import pytest

from mmapps.serve.supply_chain import main

needs_cyclonedx = pytest.mark.skipif(importlib.util.find_spec("cyclonedx_py") is None, reason="cyclonedx-bom is not installed (pip install cyclonedx-bom==7.5.0)")


@needs_cyclonedx
@pytest.mark.slow  # cyclonedx-py reads every installed distribution (minutes on a loaded machine)
def test_command_writes_an_sbom_of_the_service_environment_offline(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "sc"), "--no-audit"]) == 0
    assert not (tmp_path / "sc" / "pip-audit.json").exists() and "components" in capsys.readouterr().out
    path = tmp_path / "sc" / "sbom.cdx.json"
    bom = json.loads(path.read_text())
    components = len(bom["components"])
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"].startswith("1.")
    versions = {c["name"].lower().replace("_", "-"): c.get("version") for c in bom["components"]}  # PEP 503 names
    assert components > 20
    for package in ("fastapi", "uvicorn", "torch", "prometheus-client"):  # the service's own stack, versions as installed
        assert versions[package] == importlib.metadata.version(package)
    assert all(c.get("purl", "").startswith("pkg:pypi/") for c in bom["components"] if c["name"].lower() in ("fastapi", "torch"))


def test_model_without_domain_is_refused_in_one_paragraph(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--model", str(tmp_path / "best.safetensors"), "--no-audit"]) == 2
    assert "--domain and --model go together" in capsys.readouterr().err
