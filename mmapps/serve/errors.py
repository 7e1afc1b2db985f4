"""Errors answered to a client: an HTTP status, an error class (counted in the metrics) and one paragraph."""

from __future__ import annotations


class ServeError(Exception):
    """A request that cannot be served, explained in one paragraph.

    Args:
        status: the HTTP status code (4xx for the caller's mistakes, 5xx for ours).
        kind: the error class counted in the metrics (``bad_dicom``, ``too_large``, ``auth``...).
        message: what was wrong and what is accepted; never a DICOM tag value, a note or chat text.
        headers: extra response headers (e.g. ``Retry-After``).
    """

    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.headers = headers or {}


def bad_input(kind: str, message: str) -> ServeError:
    """A 400 (or 422-like) refusal of the caller's input."""
    return ServeError(400, kind, message)
