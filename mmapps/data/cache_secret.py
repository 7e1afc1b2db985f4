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
from pathlib import Path

from mmapps.errors import ConfigError
from mmapps.keyfile import read_key_file, user_config_dir

KEY_ENV = "MMAPPS_CACHE_KEY_FILE"


class CacheKeyError(ConfigError):
    """The cache's signing key file is unusable or unsafe."""


def key_file_path() -> Path:
    """Where the signing key is (or will be created): the env var, else the user config folder."""
    if os.environ.get(KEY_ENV):
        return Path(os.environ[KEY_ENV]).expanduser()
    return user_config_dir() / "cache.key"


def _is_inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


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
    return read_key_file(path, "the key that signs the cache's entries (a poisoned entry could then pass)", KEY_ENV, create=create, error=CacheKeyError)
