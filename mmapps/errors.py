"""User-facing error types: the CLI prints these as one paragraph (no traceback unless --debug)."""

from __future__ import annotations


class MmappsError(Exception):
    """A user mistake or bad input, explained in one paragraph: the file, the field, what was found, what is accepted."""

    exit_code = 2


class ConfigError(MmappsError):
    """An invalid configuration value or an unknown name."""


class DataError(MmappsError):
    """Bad input data that stops the run (or every sample failed)."""

    exit_code = 3


class CheckpointError(MmappsError):
    """A checkpoint that is missing, truncated, corrupted or belongs to another model."""

    exit_code = 4


class DomainLoadError(MmappsError):
    """A domain plugin that failed to import."""

    exit_code = 5
