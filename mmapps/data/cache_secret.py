"""The per-user secret that signs cache entries: where it lives, how it is created, when it is refused.

The key file is kept outside the cache folder (``$MMAPPS_CACHE_KEY_FILE``, else
``$XDG_CONFIG_HOME/mmapps/cache.key``, else ``~/.config/mmapps/cache.key``), created on first use
with mode 0600 from `secrets`. Anyone who can write to the cache folder but cannot read this file
cannot produce an entry that a run accepts. A key that others could read or replace is refused,
as ssh refuses a private key with loose permissions; group read is allowed so that a team can share
one cache on purpose by sharing one key file.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from mmapps.errors import ConfigError

KEY_ENV = "MMAPPS_CACHE_KEY_FILE"
_KEY_BYTES = 32


class CacheKeyError(ConfigError):
    """The cache's signing key file is unusable or unsafe."""


def key_file_path() -> Path:
    """Where the signing key is (or will be created): the env var, else the user config folder."""
    if os.environ.get(KEY_ENV):
        return Path(os.environ[KEY_ENV]).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config").expanduser()
    return base / "mmapps" / "cache.key"


def _is_inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _check_file(path: Path) -> None:
    info = path.stat()
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise CacheKeyError(f"cache key file {path}: owned by uid {info.st_uid}, not by you (uid {os.getuid()}); a key another user controls could sign poisoned cache entries. Delete it or point {KEY_ENV} to your own key")
    loose = stat.S_IMODE(info.st_mode) & (stat.S_IRWXO | stat.S_IWGRP)
    if loose:
        raise CacheKeyError(
            f"cache key file {path}: mode {stat.S_IMODE(info.st_mode):04o} lets other users read or replace the key that signs the cache; "
            f"accepted: 0600 (or 0640 to share a cache within a group). Fix with: chmod 600 {path}"
        )


def _create(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(_KEY_BYTES) + "\n")
        try:
            os.link(tmp, path)  # atomic create-if-absent with the full content: a racing process keeps the first key
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)


def load_secret(cache_root: Path | None = None, create: bool = True) -> bytes:
    """The signing key's bytes, creating the key file (0600) on first use.

    Args:
        cache_root: the cache folder; a key file inside it is refused (it would be as writable as the entries).
        create: create the file when missing (False: raise instead).

    Raises:
        CacheKeyError: key inside the cache folder, loose permissions, another owner, or not a key.
        OSError: the key cannot be created or read (the caller runs without a cache).
    """
    path = key_file_path()
    if cache_root is not None and _is_inside(path, cache_root):
        raise CacheKeyError(f"cache key file {path}: inside the cache folder {cache_root}; the key must live outside it ({KEY_ENV} or ~/.config/mmapps/cache.key)")
    if not path.exists():
        if not create:
            raise FileNotFoundError(f"cache key file {path}: not found")
        _create(path)
    _check_file(path)
    text = path.read_text().strip()
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) < 16:
        raise CacheKeyError(f"cache key file {path}: expected at least 32 hexadecimal digits, found {len(text)} characters that are not a key; delete it and a new key is created")
    return secret
