"""`mmapps <domain> check` on every built-in domain and on the pip-installed example plugin, and the example's own tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mmapps-shapes"


@pytest.fixture(scope="module")
def app(shapes_domain):
    from mmapps.cli.main import build_app

    return build_app()


def test_shapes_check_from_the_command_line(app):
    result = CliRunner().invoke(app, ["shapes", "check"])
    assert result.exit_code == 0, result.output
    assert "shapes: every contract holds" in result.output
    for step in ("declaration", "datasets", "encoders", "losses", "metrics", "write_predictions", "unlabelled"):
        assert f"ok  {step}" in result.output


def test_check_on_a_data_folder_that_is_not_there_is_a_clean_error(app, tmp_path):
    result = CliRunner().invoke(app, ["shapes", "check", "--data", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "no such folder" in result.output and "Traceback" not in result.output


def test_check_names_a_broken_contract_and_exits_5(app, tmp_path):
    result = CliRunner().invoke(app, ["shapes", "check", "--set", "model.encoders.measurements.name=tabular_mlp", "--set", "model.encoders.measurements.options.in_features=5"])
    assert result.exit_code == 5, result.output
    assert "plugin self-test of domain 'shapes', step encoders" in result.output and "Traceback" not in result.output


@pytest.mark.slow
@pytest.mark.parametrize("domain", ["medical", "driving", "surveillance"])
def test_builtin_domain_passes_its_check(domain):
    from mmapps.cli.main import build_app

    result = CliRunner().invoke(build_app(), [domain, "check"])
    assert result.exit_code == 0, result.output
    assert f"{domain}: every contract holds" in result.output and "ok  report" in result.output


@pytest.mark.slow
def test_example_plugin_passes_its_own_tests(shapes_site, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shapes_site), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1", "HOME": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"}
    for key in ("MMAPPS_CACHE", "MMAPPS_CACHE_DIR", "MMAPPS_CACHE_KEY_FILE"):
        env.pop(key, None)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "4 passed" in proc.stdout
