"""Preprocessed-sample cache: deterministic preprocessing results on disk, keyed by file content and transform config.

Only deterministic steps (decode, windowing, resize, intensity normalisation) are cached; random
augmentation runs after the cache, every epoch. A changed file (new content hash) or a changed
transform config (new config hash) misses the cache, so stale entries are never served.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path
from typing import Any, Callable

import numpy as np

CACHE_FORMAT = 1


def content_hash(path: Path) -> str:
    """SHA-256 of the file bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def config_hash(config: dict[str, Any]) -> str:
    """Stable hash of a JSON-able transform config."""
    return hashlib.sha256(json.dumps({"format": CACHE_FORMAT, **config}, sort_keys=True, default=str).encode()).hexdigest()[:16]


class PreprocessCache:
    """Disk cache of ``(array, metadata)`` per source file.

    Args:
        cache_dir: folder (created); None disables caching (every call computes).
        transform_config: everything that changes the preprocessed output (size, reader options...).
    """

    def __init__(self, cache_dir: Path | None, transform_config: dict[str, Any]) -> None:
        self.config_key = config_hash(transform_config)
        self.folder = Path(cache_dir) / "medical" / self.config_key if cache_dir is not None else None
        self._hash_of_stat: dict[tuple[str, int, int], str] = {}
        self.hits = 0
        self.misses = 0

    def _key(self, path: Path) -> str:
        stat = os.stat(path)
        memo = (str(path), stat.st_size, stat.st_mtime_ns)
        if memo not in self._hash_of_stat:  # re-hash only when size or mtime changed
            self._hash_of_stat[memo] = content_hash(path)
        return self._hash_of_stat[memo]

    def load(self, path: Path, compute: Callable[[Path], tuple[np.ndarray, dict]]) -> tuple[np.ndarray, dict]:
        """Return the cached result for ``path`` or compute, store and return it.

        Args:
            path: source file.
            compute: ``path -> (array, metadata)``, deterministic.
        """
        if self.folder is None:
            self.misses += 1
            return compute(path)
        entry = self.folder / f"{self._key(path)}.pkl"
        if entry.is_file():
            try:
                with entry.open("rb") as handle:
                    array, meta = pickle.load(handle)
                self.hits += 1
                return array, meta
            except (EOFError, pickle.UnpicklingError, ValueError):
                entry.unlink(missing_ok=True)  # a torn write from a killed run: recompute
        array, meta = compute(path)
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = entry.with_suffix(f".{os.getpid()}.tmp")
        with tmp.open("wb") as handle:
            pickle.dump((array, meta), handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, entry)  # atomic: concurrent workers never read half a file
        self.misses += 1
        return array, meta
