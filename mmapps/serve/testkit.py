"""Helpers for the service's tests (and for plugin authors testing their served domain).

``smoke_checkpoint(domain, folder)`` trains the domain's smoke recipe once per folder (a file
lock makes parallel test workers share one run); ``api_keys()`` makes a predict and an admin
key; ``crash_reader`` / ``hang_reader`` are decoder readers that crash or hang on purpose.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Any


def shared_folder(tmp_path_factory: Any) -> Path:
    """A folder shared by every pytest-xdist worker of this session."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def smoke_checkpoint(domain: Any, folder: Path, overrides: list[str] | None = None) -> Path:
    """``folder/<domain>/checkpoints/best.safetensors`` of a smoke run, trained once (under a file lock)."""
    from filelock import FileLock

    folder = Path(os.environ.get("MMAPPS_SERVE_TEST_RUNS") or folder)  # a developer may keep the runs between sessions
    run = folder / f"serve-{domain.name}-smoke"
    best = run / "checkpoints" / "best.safetensors"
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / f"serve-{domain.name}.lock")):
        if not best.is_file():
            from mmapps.workflows.resolve import resolve_config
            from mmapps.workflows.run import train

            cfg = resolve_config(domain, "smoke", overrides=[f"out_dir={run}", "train.progress=false", *(overrides or [])])
            train(cfg, domain)
    return best


def api_keys() -> tuple[str, str, str]:
    """``(MMAPPS_API_KEYS value, predict secret, admin secret)``."""
    predict, admin = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    return f"caller:predict:{predict};operator:admin:{admin}", predict, admin


def crash_reader(cfg: Any, root: Path) -> list:
    """A decoder reader that dies like a crashing C decoder (SIGABRT)."""
    os.abort()


def hang_reader(cfg: Any, root: Path) -> list:
    """A decoder reader that never returns."""
    while True:
        time.sleep(1)
