"""Discovery by entry point: a third-party plugin installed with pip works; a broken one is isolated."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _fake_distribution(site: Path, name: str, target: str) -> None:
    info = site / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[mmapps.domains]\n{target}\n")


def test_broken_plugin_is_listed_with_its_error_and_others_still_work(shapes_domain, tmp_path, monkeypatch):
    from mmapps.plugins import discover_domains, get_domain
    from mmapps.errors import DomainLoadError

    _fake_distribution(tmp_path, "broken-plugin", "brokenfield = brokenfield_missing_module:domain")
    monkeypatch.syspath_prepend(str(tmp_path))
    discover_domains.cache_clear()
    try:
        entries = {e.name: e for e in discover_domains()}
        assert entries["brokenfield"].domain is None
        assert "No module named 'brokenfield_missing_module'" in entries["brokenfield"].error
        assert "pip install brokenfield_missing_module" in entries["brokenfield"].install_hint
        assert entries["shapes"].domain is not None
        with pytest.raises(DomainLoadError, match="failed to import"):
            get_domain("brokenfield")
        from typer.testing import CliRunner

        from mmapps.cli.main import build_app

        app = build_app()
        result = CliRunner().invoke(app, ["domains"])
        assert result.exit_code == 0 and "BROKEN" in result.output and "shapes" in result.output
        result = CliRunner().invoke(app, ["brokenfield", "train"])
        assert result.exit_code == 5 and "Install hint" in result.output
    finally:
        monkeypatch.undo()
        discover_domains.cache_clear()


@pytest.mark.slow
def test_pip_installed_example_plugin_trains_from_the_command_line(shapes_site, tmp_path):
    site = shapes_site  # pip-installed from examples/mmapps-shapes by the fixture
    assert list(site.glob("mmapps_shapes-*.dist-info")), "installed as a distribution with its entry point"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]), "MMAPPS_CACHE": str(tmp_path / "cache")}
    listed = subprocess.run([sys.executable, "-m", "mmapps", "domains"], env=env, capture_output=True, text=True)
    assert "shapes" in listed.stdout and "ok" in listed.stdout
    proc = subprocess.run([sys.executable, "-m", "mmapps", "shapes", "train", "--recipe", "smoke", "--out", str(tmp_path / "run")], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "run" / "report.md").exists() and "accuracy" in proc.stdout


def test_train_flag_becomes_a_set_override_and_bad_names_are_refused():
    import typer
    from typer.testing import CliRunner

    from mmapps.cli.verbs import with_train_flags
    from mmapps.domain import TrainFlag

    seen = {}

    def train(set_: list[str] = typer.Option([], "--set"), seed: int = typer.Option(0)) -> None:
        seen.update(set_=set_, seed=seed)

    app = typer.Typer()
    app.command("train")(with_train_flags(train, (TrainFlag("allow-x", "data.options.allow_x", "help"),)))
    app.command("other")(lambda: None)
    assert CliRunner().invoke(app, ["train", "--allow-x", "--set", "a.b=1", "--seed", "3"]).exit_code == 0
    assert seen == {"set_": ["a.b=1", "data.options.allow_x=true"], "seed": 3}
    assert CliRunner().invoke(app, ["train"]).exit_code == 0 and seen["set_"] == []
    for bad in ("--allow-x", "Allow-X", "allow x"):
        with pytest.raises(ValueError, match="lower case"):
            TrainFlag(bad, "data.options.allow_x", "help")


def test_configured_labels_replace_the_declared_ones_only_when_set():
    from mmapps.config import RunConfig
    from mmapps.domain import with_configured_labels
    from mmapps.errors import ConfigError
    from mmapps.plugins import get_domain

    medical = get_domain("medical")
    assert with_configured_labels(medical, RunConfig(domain="medical")) is medical
    chosen = with_configured_labels(medical, RunConfig(domain="medical", data={"options": {"findings": ["Edema", "Fracture"]}}))
    assert chosen.primary_task.labels == ("Edema", "Fracture") and medical.primary_task.labels[0] == "No Finding"
    with pytest.raises(ConfigError, match="data.options.findings"):
        with_configured_labels(medical, RunConfig(domain="medical", data={"options": {"findings": "Edema"}}))


def test_demo_cache_folder_changes_with_the_demo_version():
    import dataclasses

    from mmapps.plugins import get_domain
    from mmapps.workflows.resolve import demo_folder_name

    medical = get_domain("medical")
    assert demo_folder_name(dataclasses.replace(medical, demo_version=1), 200) == "medical-demo-n200"  # version 1 keeps existing caches valid
    assert demo_folder_name(medical, 200) == f"medical-demo-n200-v{medical.demo_version}"
    assert demo_folder_name(dataclasses.replace(medical, demo_version=3), 200) == "medical-demo-n200-v3"
    assert demo_folder_name(get_domain("surveillance"), 300) == "surveillance-demo-n300-v2"
