"""Shared fixtures: the example plugin pip-installed like a third party's (cache isolation: ../conftest.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "mmapps-shapes"


def pip_install_example(target: Path) -> Path:
    """pip-install the example plugin into `target` (its own site folder), as a user would install a plugin.

    A copy of the source is built, so parallel test workers never share build folders and the
    repository stays clean.
    """
    import shutil

    source = target.parent / f"{target.name}-src"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target", str(target), str(source)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return target


@pytest.fixture(scope="session")
def shapes_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the installed example plugin (dist-info with its entry point)."""
    return pip_install_example(tmp_path_factory.mktemp("shapes-site"))


@pytest.fixture(scope="session")
def shapes_domain(shapes_site: Path):
    """The `shapes` domain, discovered through its entry point (never imported by a back door)."""
    from mmapps.plugins import discover_domains, get_domain

    import importlib

    if str(shapes_site) not in sys.path:
        sys.path.insert(0, str(shapes_site))
    importlib.invalidate_caches()  # the folder's listing may be cached from before pip filled it
    discover_domains.cache_clear()
    return get_domain("shapes")


@pytest.fixture(scope="session")
def shapes_smoke_run(shapes_domain, tmp_path_factory: pytest.TempPathFactory):
    """One trained smoke run of the example domain, shared by the tests that read its outputs."""
    from mmapps.workflows.resolve import resolve_config
    from mmapps.workflows.run import train

    out = tmp_path_factory.mktemp("shapes-run") / "run"
    cfg = resolve_config(shapes_domain, "smoke", overrides=[f"out_dir={out}", "train.progress=false"])
    return train(cfg, shapes_domain)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """GPU tests are skipped where no CUDA device is present."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
