"""Cache keys: what identifies a preprocessed entry, computed without reading the source files.

A key is the domain, the code format version, the preprocessing config and, per source file, its
fingerprint. The default fingerprint is ``(resolved path, size, mtime_ns)``: one ``stat`` per file,
so a warm run never re-reads its data to find its entries. ``content`` mode fingerprints the bytes
(SHA-256, plus the size), for data that is copied or touched without changing; hashes are
remembered per ``(path, size, mtime_ns)`` within a process, so each file is hashed once per run.
Entry names are an HMAC of the key under the user's secret: they leak no path, and two users
sharing one folder never overwrite each other's entries.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

KeyMode = Literal["stat", "content"]


def config_digest(config: Mapping[str, Any]) -> str:
    """Stable digest of a JSON-able preprocessing config (key order does not matter)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def content_digest(path: str | Path) -> str:
    """SHA-256 of the file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class SourceFingerprints:
    """Fingerprints of source files in one mode, with per-process memos (resolved paths, content hashes).

    Args:
        mode: ``stat`` (resolved path, size, mtime_ns) or ``content`` (SHA-256 and size).
    """

    def __init__(self, mode: KeyMode = "stat") -> None:
        if mode not in ("stat", "content"):
            raise ValueError(f"cache.key: found {mode!r}; accepted 'stat' (path, size, mtime) or 'content' (SHA-256 of the bytes)")
        self.mode = mode
        self._real: dict[str, str] = {}
        self._dirs: dict[str, str] = {}
        self._digest: dict[tuple[str, int, int], str] = {}

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers start with empty memos
        return {"mode": self.mode, "_real": {}, "_dirs": {}, "_digest": {}}

    def _realpath(self, text: str) -> str:
        """``os.path.realpath`` with the folders memoised: a new file costs one ``lstat`` per new folder, not one per component."""
        absolute = os.path.abspath(text)
        if f"{os.sep}..{os.sep}" in text + os.sep:  # ".." after a symlink is not lexical: let realpath walk it
            return os.path.realpath(text)
        folder, name = os.path.split(absolute)
        candidate = os.path.join(self._real_dir(folder), name)
        return os.path.realpath(candidate) if os.path.islink(candidate) else candidate

    def _real_dir(self, folder: str) -> str:
        real = self._dirs.get(folder)
        if real is None:
            parent, name = os.path.split(folder)
            if not name:
                real = folder
            else:
                candidate = os.path.join(self._real_dir(parent), name)
                real = os.path.realpath(candidate) if os.path.islink(candidate) else candidate
            self._dirs[folder] = real
        return real

    def of(self, path: str | Path | None) -> list[Any]:
        """The fingerprint of one source (``[None]`` for an absent optional input).

        Raises:
            FileNotFoundError / OSError: the source cannot be stat'ed (the caller's read would fail too).
        """
        if path is None:
            return [None]
        text = os.fspath(path)
        real = self._real.get(text)
        if real is None:
            real = self._real[text] = self._realpath(text)
        info = os.stat(real)
        if self.mode == "stat":
            return [real, info.st_size, info.st_mtime_ns]
        memo = (real, info.st_size, info.st_mtime_ns)
        digest = self._digest.get(memo)
        if digest is None:
            digest = self._digest[memo] = content_digest(real)
        return ["sha256", digest, info.st_size]


def entry_name(secret: bytes, domain: str, format_version: int, config: str, fingerprints: Sequence[list[Any]], extra: Any = None) -> str:
    """The entry's file stem: HMAC-SHA256 of the whole key under the user's secret (40 hex digits)."""
    material = json.dumps([domain, format_version, config, fingerprints, extra], default=str, separators=(",", ":"))
    return hmac.digest(secret, b"name\0" + material.encode(), "sha256").hex()[:40]
