"""``mmapps new-domain``: argument errors, the shapes example is its output, every task kind passes the
self-test, and a generated image + text multi-label plugin pip-installs and passes its own tests."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmapps.errors import ConfigError
from mmapps.scaffold import command_line, new_domain, parse_spec, render_files
from mmapps.testing import check_domain

REPO = Path(__file__).resolve().parents[1]
SHAPES = REPO / "examples" / "mmapps-shapes"
SHAPES_ARGS = dict(
    name="shapes",
    modalities="image,measurements:tabular",
    task="multiclass",
    labels="small-round,large-round,small-angular,large-angular",
    task_name="shape",
    description="Example plugin: PNG shape images + CSV measurements -> shape class",
)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("Ecg", "signal", "multilabel"), "NAME 'Ecg': expected a lower-case identifier"),
        (("ecg", "waveform", "multilabel"), "kind 'waveform' has no template; templates exist for image, text, tabular, signal"),
        (("ecg", "signal", "ranking"), "--task 'ranking': expected one of multiclass, multilabel, regression"),
        (("ecg", "signal,signal", "multilabel"), "expected one or more distinct modalities"),
        (("ecg", "note:text", "multiclass", "normal"), "a multiclass task needs at least two classes"),
        (("ecg", "note:text", "multilabel", "note,mi"), "--labels 'note,mi': expected distinct names that are not also column names (['note'])"),
    ],
)
def test_bad_arguments_are_refused_naming_the_argument(args, message):
    with pytest.raises(ConfigError) as excinfo:
        parse_spec(*args)
    assert message in str(excinfo.value)


def test_shapes_example_is_the_template_output():
    spec = parse_spec(**SHAPES_ARGS)
    files = render_files(spec)
    on_disk = {p.relative_to(SHAPES).as_posix() for p in SHAPES.rglob("*") if p.is_file() and "__pycache__" not in p.parts and ".egg-info" not in str(p) and "build" not in p.parts}
    assert on_disk == set(files), "examples/mmapps-shapes holds exactly the generated files"
    for relative, content in files.items():
        assert (SHAPES / relative).read_text() == content, f"examples/mmapps-shapes/{relative} differs from `{command_line(spec)}`; regenerate it with --force"
    assert command_line(spec) in (SHAPES / "README.md").read_text()


@pytest.mark.parametrize("task", ["multiclass", "multilabel", "regression"])
def test_every_task_kind_passes_the_self_test(task, tmp_path, monkeypatch):
    name = f"gen_{task}"
    folder = new_domain(name, "vitals:tabular,trace:signal", task, out=tmp_path / name)
    monkeypatch.syspath_prepend(str(folder))
    importlib.invalidate_caches()
    domain = importlib.import_module(f"mmapps_{name}").domain
    data = importlib.import_module(f"mmapps_{name}.data")
    root = data.write_demo_data(tmp_path / "demo", 24, 0)
    report = check_domain(domain, tmp_path / "check", data=root)
    assert {"encoders", "losses", "metrics", "unlabelled"} <= set(report.steps)
    assert domain.primary_task.higher_is_better == (task != "regression")


def test_new_domain_command_writes_the_package_and_refuses_a_full_folder(tmp_path):
    from mmapps.cli.main import build_app

    app = build_app()
    out = tmp_path / "pkg"
    result = CliRunner().invoke(app, ["new-domain", "retina", "--modalities", "fundus:image,report:text", "--task", "multilabel", "--labels", "dr,amd,glaucoma", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"plugin package written: {out}" in result.output and "mmapps retina check" in result.output
    assert 'retina = "mmapps_retina:domain"' in (out / "pyproject.toml").read_text()
    assert 'LABELS = ("dr", "amd", "glaucoma")' in (out / "mmapps_retina" / "__init__.py").read_text()
    again = CliRunner().invoke(app, ["new-domain", "retina", "--modalities", "image", "--task", "multilabel", "--out", str(out)])
    assert again.exit_code == 2 and "the folder exists and is not empty" in again.output and "Traceback" not in again.output


@pytest.mark.slow
def test_generated_image_text_multilabel_plugin_installs_and_passes_its_own_tests(tmp_path):
    source = new_domain("cxr", "image,note:text", "multilabel", out=tmp_path / "mmapps-cxr")
    site = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target", str(site), str(source)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    for key in ("MMAPPS_CACHE", "MMAPPS_CACHE_DIR", "MMAPPS_CACHE_KEY_FILE"):
        env.pop(key, None)
    env["HOME"] = str(tmp_path / "home")  # the plugin's fixtures keep their caches in their own temporary folders
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=source, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "4 passed" in proc.stdout
