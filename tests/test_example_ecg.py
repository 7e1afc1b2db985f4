"""The ECG example plugin (examples/mmapps-ecg), pip-installed like a third party's: discovered by its entry
point, its own tests (self-test, training on WFDB demo records, predict, bad records) passing, leakage refused."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mmapps-ecg"
SUPERCLASSES = ("NORM", "MI", "STTC", "CD", "HYP")
ECG_INSTALL: dict[str, Path] = {}


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
    ECG_INSTALL.update(site=site, source=source)
    yield get_domain("ecg")
    sys.path.remove(str(site))
    discover_domains.cache_clear()


@pytest.fixture(scope="module")
def ecg_demo(ecg_domain, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mmapps.domain import resolve

    return resolve(ecg_domain.write_demo_data)(tmp_path_factory.mktemp("ecg-demo"), 30, 0)


@pytest.mark.slow
def test_ecg_plugin_passes_its_own_tests(ecg_domain, tmp_path):
    """examples/mmapps-ecg/tests: the self-test, a smoke run (metrics per superclass with CIs), predict on
    unlabelled records, bad rows and a truncated WFDB record skipped and counted."""
    import os

    assert ecg_domain.modality("ecg").kind == "signal"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ECG_INSTALL["site"]), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1", "HOME": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"}
    for key in ("MMAPPS_CACHE", "MMAPPS_CACHE_DIR", "MMAPPS_CACHE_KEY_FILE"):
        env.pop(key, None)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=ECG_INSTALL["source"], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "4 passed" in proc.stdout


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
