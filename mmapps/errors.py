"""User-facing error types: the CLI prints these as one paragraph (no traceback unless --debug).

Exit codes (documented in docs/cli.md): 2 configuration, 3 data, 4 checkpoint, 5 plugin import,
6 nothing to resume, 7 run folder in use, 8 a write failed (disk full or another OS error).
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path


class MmappsError(Exception):
    """A user mistake or bad input, explained in one paragraph: the file, the field, what was found, what is accepted."""

    exit_code = 2


class ConfigError(MmappsError):
    """An invalid configuration value or an unknown name."""


class DataError(MmappsError):
    """Bad input data that stops the run (or every sample failed)."""

    exit_code = 3


class PredictionError(DataError):
    """A model produced non-finite predictions (NaN/inf), so no metric of them means anything."""


class CheckpointError(MmappsError):
    """A checkpoint that is missing, truncated, corrupted or belongs to another model."""

    exit_code = 4


class DomainLoadError(MmappsError):
    """A domain plugin that failed to import."""

    exit_code = 5


class NothingToResumeError(MmappsError):
    """``--resume`` on a folder that holds no resumable run (no config.yaml or no checkpoints/resume.safetensors)."""

    exit_code = 6


class RunLockedError(MmappsError):
    """The run folder is used by another live run (its lock file names the holder)."""

    exit_code = 7


class WriteError(MmappsError):
    """Writing an output failed at the OS level (full disk, quota, read-only or failing device)."""

    exit_code = 8

    @classmethod
    def from_os_error(cls, path: Path | str, err: OSError, note: str = "") -> "WriteError":
        """One paragraph naming the file, the errno and the free space on its file system."""
        code = errno.errorcode.get(err.errno or 0, "unknown errno")
        return cls(f"cannot write {path}: {code} ({err.strerror or err}); {free_space(path)}.{(' ' + note) if note else ''}")


def free_space(path: Path | str) -> str:
    """``"<N> MB free on <folder>"`` for the nearest existing folder above `path`, or why it is unknown."""
    folder = Path(path).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        usage = shutil.disk_usage(folder if folder.is_dir() else folder.parent)
    except OSError as err:
        return f"free space on {folder} unknown ({os.strerror(err.errno or 0)})"
    return f"{usage.free / 1e6:.1f} MB free of {usage.total / 1e6:.0f} MB on the file system of {folder}"
