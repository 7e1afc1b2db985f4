"""Every test (core and domains) runs with its caches and per-user key files in a temporary folder.

With the sample cache on by default and per-user keys created on first use, a test must never
write into the developer's ``~/.cache/mmapps`` or ``~/.config/mmapps``.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_user_folders(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ["MMAPPS_CACHE"] = str(tmp_path_factory.mktemp("mmapps-cache"))
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("xdg-config"))
    for name in ("MMAPPS_CACHE_DIR", "MMAPPS_CACHE_KEY_FILE", "MMAPPS_CHAT_PSEUDONYM_KEY", "MMAPPS_CHAT_PSEUDONYM_KEY_FILE"):
        os.environ.pop(name, None)


# Test modules whose slow tests form the `heavy` set, which the default run leaves out (`python -m pytest -m heavy`
# runs it). Empty: the Ray Serve end-to-end test (tests/test_serve_ray.py) runs in the default run and in CI.
HEAVY_MODULES: frozenset[str] = frozenset()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in HEAVY_MODULES and item.get_closest_marker("slow") is not None:
            item.add_marker(pytest.mark.heavy)
