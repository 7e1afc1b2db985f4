"""Tests of the `shapes` plugin: the mmapps self-test, a smoke training run, predict on unlabelled data, bad rows.

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
from mmapps_shapes.data import FIELDS, TARGET_COLUMNS, build_datasets


def test_plugin_self_test_passes(mmapps_self_test):
    # the fixture raises mmapps.testing.ContractError naming the broken contract
    assert {"datasets", "batch", "model", "postprocess", "metrics", "write_predictions", "unlabelled"} <= set(mmapps_self_test.steps)


def test_smoke_run_writes_metrics_report_and_predictions(mmapps_smoke_run, mmapps_domain):
    metrics = json.loads((mmapps_smoke_run.run_dir / "metrics.json").read_text())
    assert mmapps_domain.primary_task.primary_metric in metrics
    assert (mmapps_smoke_run.run_dir / "report.md").is_file() and mmapps_smoke_run.predictions.is_file()


def test_predict_on_unlabelled_data_without_splits(mmapps_smoke_run, mmapps_domain, mmapps_demo_root, tmp_path):
    root = shutil.copytree(mmapps_demo_root, tmp_path / "unlabelled")
    rows = _rows(root)
    for row in rows:
        row.update({"split": "", **{column: "" for column in TARGET_COLUMNS}})
    _write_rows(root, rows)
    path = predict(mmapps_smoke_run.run_dir / "checkpoints" / "best.safetensors", mmapps_domain, root, tmp_path / "out")
    assert len(path.read_text().splitlines()) == len(rows)


def test_bad_rows_are_skipped_and_counted_or_stop_the_run(mmapps_domain, mmapps_demo_root, tmp_path):
    root = shutil.copytree(mmapps_demo_root, tmp_path / "bad")
    rows = _rows(root)
    rows[0]["split"] = "holdout"
    rows[1]["sample_id"] = rows[2]["sample_id"]
    _write_rows(root, rows)
    cfg = resolve_config(mmapps_domain, "smoke", overrides=[f"data.root={root}"])
    splits = build_datasets(cfg)
    assert sorted(issue.reason.split(":")[0] for issue in splits.issues.issues) == ["sample_id", "split"]
    assert "2 input(s) skipped" in splits.issues.summary()
    with pytest.raises(DataError, match="split: found 'holdout'"):
        build_datasets(resolve_config(mmapps_domain, "smoke", overrides=[f"data.root={root}", "data.on_error=stop"]))


def _rows(root: Path) -> list[dict[str, str]]:
    with (root / "samples.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _write_rows(root: Path, rows: list[dict[str, str]]) -> None:
    with (root / "samples.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, FIELDS)
        writer.writeheader()
        writer.writerows(rows)
