"""The preprocessed-sample cache every domain configures: deterministic preprocessing results on disk.

One mechanism for all domains (medical images, surveillance clip features, ...). A domain opens
its namespace with `open_cache(cfg, domain, config)`, where ``config`` is everything that changes
its preprocessed output, and reads through `SampleCache.get_or_compute`. Only deterministic work
belongs in the cache; random augmentation runs after it, every epoch.

Safety (the folder may be shared or writable by others): entries hold arrays and plain JSON
metadata only (`cache_format`, safetensors; nothing is unpickled), each signed with an HMAC-SHA256
under a per-user key kept outside the folder (`cache_secret`); an entry that fails its check
(tampered, poisoned, torn by a kill, foreign) is refused, deleted, rebuilt and counted. Folders are
created 0700. Keys (`cache_key`) need one ``stat`` per source file, never a re-read of the data.
Size: a cap (``cache.max_size_gb``, 10 GiB by default) with LRU eviction (`cache_store`).

Config (`mmapps.config.CacheConfig`): ``cache.enabled`` (default true), ``cache.dir`` (default
``$MMAPPS_CACHE_DIR``, else ``<user cache folder>/mmapps/samples``), ``cache.key`` (``stat`` or
``content``), ``cache.max_size_gb``.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from mmapps.data.cache_format import (
    EntryRefused,
    decode_entry,
    encode_entry,
    plain_metadata,
)
from mmapps.data.cache_key import KeyMode, SourceFingerprints, config_digest, entry_name
from mmapps.data.cache_secret import load_secret
from mmapps.data.cache_store import ENTRY_SUFFIX, CacheStore

DIR_ENV = "MMAPPS_CACHE_DIR"
FORMAT_VERSION = 1  # of the core entry layout; a domain versions its own output inside ``config``
DEFAULT_MAX_GB = 10.0


def default_cache_dir() -> Path:
    """``$MMAPPS_CACHE_DIR``, else ``<$MMAPPS_CACHE | $XDG_CACHE_HOME/mmapps | ~/.cache/mmapps>/samples``."""
    if os.environ.get(DIR_ENV):
        return Path(os.environ[DIR_ENV]).expanduser()
    if os.environ.get("MMAPPS_CACHE"):
        return Path(os.environ["MMAPPS_CACHE"]).expanduser() / "samples"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "mmapps" / "samples"


def code_digest(*modules: str) -> str:
    """SHA-256 of the source files of the named modules: put it in a cache config so a code change misses.

    A domain lists the modules whose code determines its preprocessed output; any edit to them (a
    new reader, a fixed transform) then invalidates old entries without a hand-kept version number.
    """
    import importlib.util

    digest = hashlib.sha256()
    for name in modules:
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec is not None else None
        digest.update(name.encode() + b"\0")
        if origin and os.path.isfile(origin):
            with open(origin, "rb") as handle:
                digest.update(handle.read())
    return digest.hexdigest()[:16]


class CachedSample(NamedTuple):
    """A cache hit or a fresh result: named arrays and plain JSON metadata (identical either way)."""

    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]


@dataclass
class CacheStats:
    """What one process's cache did (DataLoader workers count their own)."""

    hits: int = 0
    misses: int = 0
    refused: int = 0
    write_errors: int = 0
    refused_reasons: Counter = field(default_factory=Counter)
    last_write_error: str | None = None

    def summary(self) -> str:
        text = f"{self.hits} hit(s), {self.misses} miss(es)"
        if self.refused:
            reasons = ", ".join(f"{n} x {r}" for r, n in self.refused_reasons.most_common(3))
            text += f", {self.refused} entr(y/ies) refused and rebuilt ({reasons})"
        if self.write_errors:
            text += f", {self.write_errors} write(s) failed ({self.last_write_error})"
        return text


class SampleCache:
    """One domain's namespace in the cache folder.

    Args:
        root: the cache folder.
        domain: the domain name (its subfolder).
        config: JSON-able description of everything that changes the preprocessed output.
        secret: the user's signing key (`cache_secret.load_secret`).
        key_mode: ``stat`` (path, size, mtime_ns) or ``content`` (SHA-256 of the bytes).
        max_bytes: size cap of the whole folder.
    """

    def __init__(self, root: Path, domain: str, config: Mapping[str, Any], secret: bytes, key_mode: KeyMode = "stat", max_bytes: int = int(DEFAULT_MAX_GB * 2**30)) -> None:
        self.root, self.domain = Path(root), domain
        self._folder = os.path.join(self.root, domain)
        self.key_mode = key_mode
        self.config_digest = config_digest(config)
        self._secret = secret
        self._fingerprints = SourceFingerprints(key_mode)
        self.store = CacheStore(self.root, max_bytes)
        self.stats = CacheStats()

    def key(self, sources: Sequence[str | Path | None], extra: Any = None) -> str:
        """The entry name for these source files (+ per-sample ``extra`` parameters, JSON-able)."""
        prints = [self._fingerprints.of(s) for s in sources]
        return entry_name(self._secret, self.domain, FORMAT_VERSION, self.config_digest, prints, extra)

    def path_of(self, name: str) -> Path:
        return Path(self._folder, name[:2], name + ENTRY_SUFFIX)

    def get(self, name: str) -> CachedSample | None:
        """The entry, or None when absent or refused (a refused entry is deleted and counted)."""
        path = os.path.join(self._folder, name[:2], name + ENTRY_SUFFIX)  # str: pathlib costs more than the read here
        try:
            data = self.store.read(path)
        except OSError:
            return None
        if data is None:
            return None
        try:
            arrays, meta = decode_entry(self._secret, name, data)
        except EntryRefused as err:
            self.stats.refused += 1
            self.stats.refused_reasons[str(err).split(" (")[0]] += 1
            self.store.remove(path)
            return None
        return CachedSample(arrays, meta)

    def put(self, name: str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
        """Sign and store an entry; a failed write (full disk, read-only folder) is counted, not raised."""
        data = encode_entry(self._secret, name, arrays, meta)
        try:
            self.store.write(self.path_of(name), data)
        except OSError as err:
            self.stats.write_errors += 1
            self.stats.last_write_error = f"{err.strerror or err} ({self.root})"

    def get_or_compute(self, sources: Sequence[str | Path | None], compute: Callable[[], tuple[Mapping[str, np.ndarray], Mapping[str, Any]]], extra: Any = None) -> CachedSample:
        """The cached result for ``sources``, or ``compute()`` stored and returned.

        Args:
            sources: the input files the result is made from (None for an absent optional input).
            compute: ``() -> (arrays, metadata)``, deterministic; its errors propagate and nothing is stored.
            extra: per-sample parameters that change the result (JSON-able), beside the cache's config.

        Raises:
            TypeError: ``compute`` returned metadata that is not plain JSON.
        """
        name = self.key(sources, extra)
        found = self.get(name)
        if found is not None:
            self.stats.hits += 1
            return found
        arrays, meta = compute()
        arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
        try:
            meta = plain_metadata(meta)
        except TypeError as err:
            raise TypeError(f"cache entries of domain {self.domain!r} hold plain JSON metadata only: {err}") from None
        self.stats.misses += 1
        self.put(name, arrays, meta)
        return CachedSample(arrays, meta)

    def describe(self) -> str:
        """One line for the run's report: where, which key, what happened."""
        return f"on ({self.root}/{self.domain}, key={self.key_mode}): {self.stats.summary()}"


def open_cache(cfg: Any, domain: str, config: Mapping[str, Any]) -> SampleCache | None:
    """The domain's cache from the run config, or None when ``cache.enabled`` is false or it cannot work.

    A folder or key that cannot be created (read-only home, full disk) is told once on stderr and
    the run goes on without a cache; an unsafe key file is an error (`CacheKeyError`).
    """
    settings = getattr(cfg, "cache", None)
    if settings is not None and not settings.enabled:
        return None
    legacy = getattr(getattr(cfg, "data", None), "cache_dir", None)
    explicit = settings.dir if settings is not None and settings.dir is not None else legacy
    root = Path(explicit).expanduser() if explicit is not None else default_cache_dir()
    try:
        secret = load_secret(root)
    except OSError as err:
        print(f"warning: the preprocessed-sample cache is off for this run: its key file cannot be created or read ({err}); set MMAPPS_CACHE_KEY_FILE or cache.enabled=false", file=sys.stderr)
        return None
    key_mode = settings.key if settings is not None else "stat"
    max_bytes = int((settings.max_size_gb if settings is not None else DEFAULT_MAX_GB) * 2**30)
    return SampleCache(root, domain, config, secret, key_mode=key_mode, max_bytes=max_bytes)
