"""pytest fixtures for a plugin's own test suite.

Enable them in the plugin's ``tests/conftest.py`` and name the domain::

    pytest_plugins = ["mmapps.testing.pytest_plugin"]

    @pytest.fixture(scope="session")
    def mmapps_domain_name() -> str:
        return "ecg"

Fixtures (session-scoped, in a temporary folder; the domain is found through its entry point,
so the package must be installed, e.g. ``pip install -e .``):

- ``mmapps_domain``: the `Domain`.
- ``mmapps_demo_root``: the domain's demo data (the ``smoke`` recipe's size), written once.
- ``mmapps_self_test``: the `CheckReport` of `check_domain` on it (raises `ContractError`).
- ``mmapps_smoke_run``: the `RunResult` of training the ``smoke`` recipe on it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def mmapps_domain_name() -> str:
    raise pytest.UsageError("define a session fixture `mmapps_domain_name` returning your domain's name in tests/conftest.py")


@pytest.fixture(scope="session")
def mmapps_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private mmapps cache folder (demo data, sample cache) for the session."""
    home = tmp_path_factory.mktemp("mmapps-home")
    os.environ.setdefault("MMAPPS_CACHE", str(home / "cache"))
    os.environ.setdefault("MMAPPS_CACHE_DIR", str(home / "samples"))
    os.environ.setdefault("MMAPPS_CACHE_KEY_FILE", str(home / "key" / "cache.key"))
    return home


@pytest.fixture(scope="session")
def mmapps_domain(mmapps_domain_name: str, mmapps_home: Path) -> Any:
    from mmapps.errors import MmappsError
    from mmapps.plugins import discover_domains, get_domain

    discover_domains.cache_clear()
    try:
        return get_domain(mmapps_domain_name)
    except MmappsError as err:
        pytest.fail(f"{err}. Install the plugin first (pip install -e .) so its mmapps.domains entry point is found", pytrace=False)


@pytest.fixture(scope="session")
def mmapps_demo_root(mmapps_domain: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mmapps.domain import resolve
    from mmapps.workflows.resolve import resolve_config

    cfg = resolve_config(mmapps_domain, "smoke")
    out = tmp_path_factory.mktemp("demo")
    return Path(resolve(mmapps_domain.write_demo_data)(out, cfg.data.demo_n, 0))


@pytest.fixture(scope="session")
def mmapps_self_test(mmapps_domain: Any, mmapps_demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from mmapps.testing import check_domain

    return check_domain(mmapps_domain, tmp_path_factory.mktemp("self-test"), data=mmapps_demo_root)


@pytest.fixture(scope="session")
def mmapps_smoke_run(mmapps_domain: Any, mmapps_demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from mmapps.workflows.resolve import resolve_config
    from mmapps.workflows.run import train

    out = tmp_path_factory.mktemp("smoke") / "run"
    cfg = resolve_config(mmapps_domain, "smoke", overrides=[f"out_dir={out}", f"data.root={mmapps_demo_root}", "train.progress=false", "train.tensorboard=false"])
    return train(cfg, mmapps_domain)
