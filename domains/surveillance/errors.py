"""The surveillance domain's error type for unreadable inputs."""

from __future__ import annotations

from mmapps.errors import DataError


class MediaError(DataError):
    """A clip, audio file, chat log or annotation that cannot be used: names the file and the reason."""
