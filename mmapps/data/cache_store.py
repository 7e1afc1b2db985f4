"""The cache folder on disk: private folders, atomic writes, LRU eviction under a size cap, usage and clearing.

Layout: ``<root>/<domain>/<2 hex>/<40 hex>.mmc`` (see `cache_format`). Folders are created with
mode 0700. A write goes to a temporary file in the same folder and is renamed over the entry, so
readers (other processes, DataLoader workers) see the old entry, the new one, or none; a torn file
left by a kill fails its signature and is rebuilt. The entry's mtime is its last use (refreshed on
a hit at most once a minute, one ``utime``): eviction deletes the least recently used entries until
the folder is back under 90 % of the cap, holding an ``flock`` on ``<root>/.lock`` so that
concurrent evictions never race. Each process tracks what it has added since it last scanned the
folder and rescans when that estimate passes the cap (or every 2000 writes), so the cap is kept
within a few entries per process without a shared index.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ENTRY_SUFFIX = ".mmc"
_TMP_SUFFIX = ".tmp"
_TOUCH_AFTER_S = 60.0
_STALE_TMP_S = 3600.0
_RESCAN_EVERY = 2000
_LOW_WATER = 0.9


def make_private_dir(path: Path, root: Path) -> None:
    """Create ``path`` and any missing folders between it and ``root`` (and ``root``) with mode 0700."""
    if path.is_dir():
        return
    missing = [p for p in (path, *path.parents) if p == root or root in p.parents]
    for folder in reversed(missing):
        if not folder.is_dir():
            folder.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.mkdir(folder, 0o700)
                os.chmod(folder, 0o700)  # exactly 0700 whatever the umask
            except FileExistsError:
                pass


@dataclass
class FileUsage:
    """Entries and bytes of one domain folder (``other``: files that are not cache entries, never read)."""

    entries: int = 0
    bytes: int = 0
    temporary: int = 0
    other: int = 0


def _walk(folder: Path) -> Iterator[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            children = list(it)
    except (FileNotFoundError, NotADirectoryError):
        return
    for child in children:
        if child.is_dir(follow_symlinks=False):
            yield from _walk(Path(child.path))
        elif child.is_file(follow_symlinks=False):
            yield child


def usage(root: Path) -> dict[str, FileUsage]:
    """Per-domain usage of the cache folder (domain = first-level folder)."""
    out: dict[str, FileUsage] = {}
    if not root.is_dir():
        return out
    for domain_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()):
        use = out.setdefault(domain_dir.name, FileUsage())
        for item in _walk(domain_dir):
            if item.name.endswith(ENTRY_SUFFIX):
                use.entries += 1
                use.bytes += item.stat(follow_symlinks=False).st_size
            elif item.name.endswith(_TMP_SUFFIX):
                use.temporary += 1
            else:
                use.other += 1
    return out


def clear(root: Path, domain: str | None = None) -> tuple[int, int]:
    """Delete the entries (and temporary files) of one domain or of all; return (files removed, bytes freed).

    Files the cache did not write are left in place (``usage`` counts them as ``other``).
    """
    removed = freed = 0
    if not root.is_dir():
        return 0, 0
    folders = [root / domain] if domain else [p for p in root.iterdir() if p.is_dir() and not p.is_symlink()]
    for folder in folders:
        for item in _walk(folder):
            if item.name.endswith((ENTRY_SUFFIX, _TMP_SUFFIX)):
                size = item.stat(follow_symlinks=False).st_size
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(item.path)
                    removed, freed = removed + 1, freed + size
        for sub in sorted((p for p in folder.glob("*") if p.is_dir()), reverse=True):
            with contextlib.suppress(OSError):
                sub.rmdir()  # only empty shard folders go
    return removed, freed


@dataclass
class CacheStore:
    """Reads, atomic writes and LRU eviction in one cache folder.

    Args:
        root: the cache folder (created 0700 on the first write).
        max_bytes: the size cap of all entries of all domains together.
    """

    root: Path
    max_bytes: int
    evicted: int = 0
    _estimate: int | None = field(default=None, repr=False)
    _since_scan: int = field(default=0, repr=False)

    def __getstate__(self) -> dict:  # a DataLoader worker rescans on its first write
        return {**self.__dict__, "_estimate": None, "_since_scan": 0}

    def read(self, path: str | Path) -> bytearray | None:
        """The entry's bytes (writable, so arrays viewing them are too), or None when absent; refreshes its last use (LRU) when stale."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            return None
        try:  # raw descriptors: a hit is a few syscalls, no file object
            info = os.fstat(fd)
            data = bytearray(info.st_size)
            got = os.readv(fd, [data])
        finally:
            os.close(fd)
        if got != info.st_size:  # replaced or truncated while reading: the signature check refuses it
            del data[got:]
        mtime = info.st_mtime
        if time.time() - mtime > _TOUCH_AFTER_S:
            with contextlib.suppress(OSError):  # a read-only shared folder still serves hits
                os.utime(path)
        return data

    def write(self, path: Path, data: bytes) -> None:
        """Write atomically (temporary file + ``os.replace``), then evict if the cap is passed.

        Raises:
            OSError: the folder is not writable or the disk is full (the caller counts it and goes on).
        """
        make_private_dir(path.parent, self.root)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}{_TMP_SUFFIX}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        self._note_written(len(data))

    def remove(self, path: str | Path) -> None:
        with contextlib.suppress(OSError):
            os.unlink(path)

    def _note_written(self, nbytes: int) -> None:
        if self._estimate is None:
            self._estimate = sum(size for _, size, _ in self._scan())
        self._estimate += nbytes
        self._since_scan += 1
        if self._estimate > self.max_bytes or self._since_scan >= _RESCAN_EVERY:
            self.evict()

    def _scan(self) -> list[tuple[str, int, float]]:
        """Every entry as (path, size, last use); stale temporary files of killed writers are removed."""
        found, now = [], time.time()
        for item in _walk(self.root):
            try:
                info = item.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if item.name.endswith(ENTRY_SUFFIX):
                found.append((item.path, info.st_size, info.st_mtime))
            elif item.name.endswith(_TMP_SUFFIX) and now - info.st_mtime > _STALE_TMP_S:
                with contextlib.suppress(OSError):
                    os.unlink(item.path)
        return found

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        make_private_dir(self.root, self.root)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX)
            except ImportError:  # no flock (Windows): eviction is still correct, only less coordinated
                pass
            yield
        finally:
            os.close(fd)

    def evict(self) -> None:
        """Delete least recently used entries until all entries fit in 90 % of the cap."""
        with self._lock():
            entries = self._scan()
            total = sum(size for _, size, _ in entries)
            if total > self.max_bytes:
                for path, size, _ in sorted(entries, key=lambda e: e[2]):
                    if total <= _LOW_WATER * self.max_bytes:
                        break
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
                        self.evicted += 1
                    total -= size
            self._estimate, self._since_scan = total, 0
