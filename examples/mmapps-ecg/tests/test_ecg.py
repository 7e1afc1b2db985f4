"""Tests of the `ecg` plugin: the mmapps self-test, a smoke run, predict on unlabelled records, bad records.

Run ``pip install -e .`` first: the domain is found through its entry point, as users will find it.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from mmapps.errors import DataError
from mmapps.workflows.resolve import resolve_config
from mmapps.workflows.run import predict
from mmapps_ecg import SUPERCLASSES
from mmapps_ecg.data import build_datasets


def _rows(root: Path) -> list[dict[str, str]]:
    with (root / "ptbxl_database.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def _write_rows(root: Path, rows: list[dict[str, str]]) -> None:
    with (root / "ptbxl_database.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_plugin_self_test_passes(mmapps_self_test):
    assert {"datasets", "batch", "model", "postprocess", "metrics", "write_predictions", "unlabelled"} <= set(mmapps_self_test.steps)


def test_smoke_run_reports_every_superclass_with_cis(mmapps_smoke_run):
    metrics = json.loads((mmapps_smoke_run.run_dir / "metrics.json").read_text())
    for name in SUPERCLASSES:
        assert f"auroc/{name}" in metrics and f"n_pos/{name}" in metrics
    assert {"auroc/macro/ci_low", "auroc/macro/ci_high", "auprc/micro/ci_low"} <= set(metrics)
    with mmapps_smoke_run.predictions.open() as handle:
        header = next(csv.reader(handle))
    assert header == ["ecg_id"] + [f"p_{n}" for n in SUPERCLASSES]
    splits = json.loads((mmapps_smoke_run.run_dir / "splits.json").read_text())
    assert all(group.startswith("patient-") for group in splits), "source patient ids never reach the run folder"


def test_predict_on_unlabelled_records_without_folds(mmapps_smoke_run, mmapps_domain, mmapps_demo_root, tmp_path):
    root = shutil.copytree(mmapps_demo_root, tmp_path / "unlabelled")
    rows = _rows(root)
    for row in rows:
        row.update({"scp_codes": "", "strat_fold": ""})
    _write_rows(root, rows)
    path = predict(mmapps_smoke_run.run_dir / "checkpoints" / "best.safetensors", mmapps_domain, root, tmp_path / "out")
    assert len(path.read_text().splitlines()) == len(rows) + 1


def test_bad_rows_and_records_are_skipped_and_counted_or_stop_the_run(mmapps_domain, mmapps_demo_root, tmp_path):
    root = shutil.copytree(mmapps_demo_root, tmp_path / "bad")
    rows = _rows(root)
    rows[0]["scp_codes"] = "NORM"
    rows[1]["strat_fold"] = "11"
    _write_rows(root, rows)
    dat = root / rows[2]["filename_lr"]
    dat = dat.with_name(dat.name + ".dat")
    dat.write_bytes(dat.read_bytes()[:500])  # truncated by a failed copy
    splits = build_datasets(resolve_config(mmapps_domain, "smoke", overrides=[f"data.root={root}"]))
    reasons = sorted(issue.reason.split(":")[0] for issue in splits.issues.issues)
    assert reasons[1:] == ["scp_codes", "strat_fold"] and reasons[0].startswith("not a readable WFDB record"), reasons
    assert "3 input(s) skipped" in splits.issues.summary()
    with pytest.raises(DataError, match="scp_codes: found 'NORM'"):
        build_datasets(resolve_config(mmapps_domain, "smoke", overrides=[f"data.root={root}", "data.on_error=stop"]))
