"""The ECG example plugin (examples/mmapps-ecg), pip-installed like a third party's: discovered by its entry
point, trained on demo WFDB records written by wfdb, bad records skipped and counted, leakage refused."""

from __future__ import annotations

import csv
import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mmapps-ecg"
SUPERCLASSES = ("NORM", "MI", "STTC", "CD", "HYP")


@pytest.fixture(scope="module")
def ecg_domain(tmp_path_factory: pytest.TempPathFactory):
    """The `ecg` domain, discovered through the entry point of the pip-installed example."""
    from mmapps.plugins import discover_domains, get_domain

    base = tmp_path_factory.mktemp("ecg-site")
    source, site = base / "src", base / "site"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target", str(site), str(source)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert list(site.glob("mmapps_ecg-*.dist-info")), "installed as a distribution with its entry point"
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    discover_domains.cache_clear()
    yield get_domain("ecg")
    sys.path.remove(str(site))
    discover_domains.cache_clear()


@pytest.fixture(scope="module")
def ecg_demo(ecg_domain, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mmapps.domain import resolve

    return resolve(ecg_domain.write_demo_data)(tmp_path_factory.mktemp("ecg-demo"), 30, 0)


def _copy_with_broken_record(demo: Path, tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(demo, root)
    dat = root / "records100" / "00000" / "00003_lr.dat"
    dat.write_bytes(dat.read_bytes()[:500])  # truncated by a failed copy
    return root


@pytest.mark.slow
def test_ecg_plugin_trains_with_ci_metrics_per_superclass_and_counts_bad_records(ecg_domain, ecg_demo, tmp_path):
    from mmapps.workflows.resolve import resolve_config
    from mmapps.workflows.run import train

    assert ecg_domain.modality("ecg").kind == "signal"
    root = _copy_with_broken_record(ecg_demo, tmp_path)
    overrides = [f"out_dir={tmp_path / 'run'}", "train.progress=false", "train.tensorboard=false", "train.epochs=1", "eval.bootstrap_resamples=20"]
    result = train(resolve_config(ecg_domain, "smoke", overrides=overrides, extra={"data": {"root": str(root)}}), ecg_domain)
    for name in SUPERCLASSES:
        assert f"auroc/{name}" in result.metrics and f"n_pos/{name}" in result.metrics
    assert {"auroc/macro/ci_low", "auroc/macro/ci_high", "auprc/micro/ci_low"} <= set(result.metrics)
    with result.predictions.open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["ecg_id"] + [f"p_{n}" for n in SUPERCLASSES] and len(rows) - 1 == result.info["test samples"]
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["skipped"] == 1 and "00003_lr" in summary["issues"][0] and "not a readable WFDB record" in summary["issues"][0]
    splits = json.loads((result.run_dir / "splits.json").read_text())
    assert all(group.startswith("patient-") for group in splits), "source patient ids never reach the run folder"


def test_ecg_options_refuse_the_report_column_and_missing_index_files(ecg_domain, ecg_demo, tmp_path):
    from mmapps.domain import resolve
    from mmapps.errors import ConfigError, DataError
    from mmapps.workflows.resolve import resolve_config

    with pytest.raises(ConfigError, match=r"data.options.note_column: .*leaks the labels"):
        resolve_config(ecg_domain, "smoke", overrides=["data.options.note_column=report"])
    with pytest.raises(ConfigError, match=r"data.options.fs: .*100 Hz \(records100/\) or 500 Hz"):
        resolve_config(ecg_domain, "smoke", overrides=["data.options.fs=250"])
    cfg = resolve_config(ecg_domain, "smoke", extra={"data": {"root": str(tmp_path)}})
    with pytest.raises(DataError, match=r"scp_statements.csv: not found; the ecg domain reads PTB-XL's layout"):
        resolve(ecg_domain.build_datasets)(cfg)
    splits = resolve(ecg_domain.build_datasets)(resolve_config(ecg_domain, "smoke", extra={"data": {"root": str(ecg_demo)}}))
    assert len(splits.train) == 24 and len(splits.val) == 3 and len(splits.test) == 3 and len(splits.issues) == 0
    sample = splits.train[0]
    assert tuple(sample.inputs["ecg"].shape) == (1000, 12) and isinstance(sample.inputs["note"], str)
    assert splits.train.task_targets("diagnosis").shape == (24, 5)


def test_ecg_plugin_passes_the_plugin_self_test(ecg_domain, ecg_demo, tmp_path):
    testing = pytest.importorskip("mmapps.testing")
    testing.check_domain(ecg_domain, tmp_path, data=ecg_demo)
