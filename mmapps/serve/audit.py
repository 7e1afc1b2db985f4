"""The audit log: append-only JSON lines of who called what, with which model, and how it ended.

Each line holds only: time, request id, key id, endpoint, status, latency, model version and
artifact hash, and for admin actions, auth failures and model loads an ``event`` with plain
facts (a version name, a reason class). Never a payload, a file name from the upload, a patient
identifier, a note or chat text, a key: callers pass fields from the fixed set below and
anything else is refused by the code, not filtered afterwards.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

FIELDS = frozenset({"time", "request_id", "key_id", "endpoint", "method", "status", "latency_ms", "model", "version", "sha256",
                    "event", "reason", "error_class", "shadow_version", "batch"})


class AuditLog:
    """Append-only JSON lines (file opened ``O_APPEND``, mode 0600), one write per event.

    Args:
        path: the log file, or None to keep events in memory only (``events``; tests, ``--no-audit``).
    """

    def __init__(self, path: Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._fd: int | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def write(self, **fields: Any) -> None:
        unknown = sorted(set(fields) - FIELDS)
        assert not unknown, f"audit fields {unknown} are not in the audit schema"
        event = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z", **fields}
        line = (json.dumps(event, sort_keys=True, default=str) + "\n").encode()
        with self._lock:
            self.events.append(event)
            if len(self.events) > 10000:
                del self.events[:5000]
            if self._fd is not None:
                os.write(self._fd, line)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
