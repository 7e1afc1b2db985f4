"""The domain object: light import, valid recipes, registered through the entry point, smoke run end to end."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
import torch

from mmapps_domains.medical import FINDINGS, domain
from mmapps_domains.medical.labels import CHEXPERT_FINDINGS


def test_import_is_light():
    code = "import sys, mmapps_domains.medical; print([m for m in ('torch', 'pydicom', 'monai', 'transformers') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_declarations():
    assert FINDINGS == CHEXPERT_FINDINGS
    assert domain.modality("image").layout == "padded" and domain.modality("note").layout == "text"
    assert domain.primary_task.primary_metric == "auroc/macro" and domain.primary_task.head == "multilabel"
    assert {"default", "gpu", "smoke", "quick"} <= set(domain.recipes)


@pytest.mark.parametrize("recipe", ["default", "gpu", "smoke", "quick"])
def test_recipes_resolve(recipe):
    from mmapps.workflows.resolve import resolve_config

    cfg = resolve_config(domain, recipe)
    assert cfg.model.encoders["image"].name == "image_cnn" and cfg.model.encoders["note"].name == "text_transformer"
    assert cfg.data.options["uncertain"] == "u-ignore"


def test_entry_point_finds_the_domain():
    from mmapps.plugins import get_domain

    assert get_domain("medical") is domain


def test_loss_masks_nan_and_pos_weight():
    import numpy as np

    from mmapps.config import RunConfig
    from mmapps_domains.medical.losses import FindingsBCE, findings_bce, pos_weight_from_targets

    logits = torch.tensor([[2.0, -1.0], [0.5, 0.0]], requires_grad=True)
    targets = torch.tensor([[1.0, float("nan")], [0.0, 1.0]])
    loss = findings_bce(logits, targets)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[[0, 1, 1], [0, 0, 1]], torch.tensor([1.0, 0.0, 1.0]))
    assert torch.allclose(loss, expected)
    loss.backward()
    assert logits.grad[0, 1] == 0
    train_targets = np.array([[1, 0], [0, 0], [0, np.nan], [0, 1]], dtype=float)
    assert pos_weight_from_targets(train_targets) == [3.0, 2.0]
    weighted = findings_bce(logits.detach(), targets, pos_weight=[3.0, 2.0])
    assert weighted > findings_bce(logits.detach(), targets)

    class Studies:  # what FindingsBCE reads from the training set
        studies = [type("Study", (), {"targets": row})() for row in train_targets]

    auto = FindingsBCE(RunConfig(domain="medical", data={"options": {"pos_weight": "auto"}}), Studies())
    assert auto.pos_weight == [3.0, 2.0] and torch.allclose(auto(logits.detach(), targets), weighted)
    assert FindingsBCE(RunConfig(domain="medical"), Studies()).pos_weight is None


@pytest.mark.slow
def test_smoke_recipe_end_to_end(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from mmapps.cli.main import build_app

    monkeypatch.setenv("MMAPPS_CACHE", str(tmp_path / "cache"))
    result = CliRunner().invoke(build_app(), ["medical", "train", "--recipe", "smoke", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert "auroc/macro" in metrics and "auroc/Edema" in metrics
    rows = list(csv.DictReader((run / "predictions.csv").open()))
    assert rows and list(rows[0])[:3] == ["study_id", "view", "n_images"] and "subject_id" not in rows[0]
    report = (run / "report.md").read_text()
    assert "Findings: AUROC with 95% CI" in report and "Grad-CAM" in report and "Calibration" in report
    # the pointing game is computed by a report section, yet reaches metrics.json and the summary table
    assert "pointing_game/hit_rate" in metrics and "| pointing_game/hit_rate |" in report.split("## Training")[0]
    for secret in ("MRN", "ACC5", "Demo General Hospital"):
        assert secret not in report and secret not in (run / "predictions.csv").read_text()
    assert (run / "figures" / "medical_gradcam.png").is_file() and (run / "figures" / "medical_reliability.png").is_file()


@pytest.mark.slow
def test_allow_report_leakage_flag_feeds_the_report_and_says_so_first(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from mmapps.cli.main import build_app

    monkeypatch.setenv("MMAPPS_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    args = ["medical", "train", "--recipe", "smoke", "--out", str(run), "--allow-report-leakage"]
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 0, result.output
    config = (run / "config.yaml").read_text()
    assert "allow_report_leakage: true" in config and "- findings" in config and "- impression" in config
    first_lines = "\n".join((run / "report.md").read_text().splitlines()[:8])
    assert "REPORT LEAKAGE" in first_lines


def test_findings_sections_without_the_flag_are_refused(tmp_path):
    from typer.testing import CliRunner

    from mmapps.cli.main import build_app

    args = ["medical", "train", "--recipe", "smoke", "--out", str(tmp_path / "run"), "--set", "data.options.note_sections=[indication,findings]"]
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 2 and "--allow-report-leakage" in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_configured_findings_size_the_head_and_name_every_output(tmp_path, monkeypatch):
    from safetensors import safe_open
    from typer.testing import CliRunner

    from mmapps.cli.main import build_app

    monkeypatch.setenv("MMAPPS_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    chosen = ["Cardiomegaly", "Edema", "Pleural Effusion", "Pneumonia"]
    args = ["medical", "train", "--recipe", "smoke", "--out", str(run), "--set", f"data.options.findings=[{','.join(chosen)}]"]
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 0, result.output
    assert list(csv.DictReader((run / "predictions.csv").open()).fieldnames)[3:] == chosen
    with safe_open(str(run / "checkpoints" / "best.safetensors"), "pt") as handle:
        assert json.loads(handle.metadata()["labels"])["findings"] == chosen
        assert handle.get_tensor("heads.findings.net.2.weight").shape[0] == len(chosen)
    metrics = json.loads((run / "metrics.json").read_text())
    assert "auroc/Edema" in metrics and "auroc/Fracture" not in metrics
