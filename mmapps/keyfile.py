"""Per-user secret key files: where they live, how they are created, when they are refused.

Several parts of mmapps sign or pseudonymise with a secret that must never be a public constant
and never reach an output: the sample cache's entry signatures, the surveillance chat pseudonyms.
Each keeps its secret in its own file under the user config folder (``$XDG_CONFIG_HOME/mmapps``,
else ``~/.config/mmapps``), created on first use from `secrets` with mode 0600. A key file that
others could read or replace, or that another user owns, is refused, as ssh refuses a loose
private key; group read (0640) is allowed so that a team can share one key on purpose.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from mmapps.errors import ConfigError

KEY_BYTES = 32
MIN_KEY_BYTES = 16  # 128 bits


def user_config_dir() -> Path:
    """``$XDG_CONFIG_HOME/mmapps``, else ``~/.config/mmapps``."""
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config").expanduser() / "mmapps"


def parse_hex_key(text: str, where: str, error: type[ConfigError] = ConfigError) -> bytes:
    """The bytes of a hex key of at least 128 bits.

    Args:
        text: the key as hex digits (surrounding white space ignored).
        where: names the key in the error, e.g. ``"cache key file /home/a/.config/mmapps/cache.key"``.
        error: the `ConfigError` subclass to raise.
    """
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) < MIN_KEY_BYTES:
        raise error(f"{where}: expected at least {2 * MIN_KEY_BYTES} hexadecimal digits (a 128-bit secret), found {len(text.strip())} "
                    "characters that are not one; delete the file and a new key is created, or generate one with "
                    "`python -c \"import secrets; print(secrets.token_hex(32))\"`")
    return key


def create_key_file(path: Path) -> None:
    """Write a new random key to ``path`` (mode 0600) unless it exists; two racing processes keep one key."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(KEY_BYTES) + "\n")
        try:
            os.link(tmp, path)  # atomic create-if-absent with the full content
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)


def check_key_file(path: Path, what: str, env_var: str, error: type[ConfigError] = ConfigError) -> None:
    """Refuse a key file owned by another user or readable/writable by others.

    Args:
        path: the key file.
        what: what the key protects, for the message (e.g. ``"the key that signs the cache"``).
        env_var: the variable that points to another key file, named in the message.
        error: the `ConfigError` subclass to raise.
    """
    info = path.stat()
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise error(f"key file {path}: owned by uid {info.st_uid}, not by you (uid {os.getuid()}); a key another user controls "
                    f"defeats {what}. Delete it or point {env_var} to your own key file")
    if stat.S_IMODE(info.st_mode) & (stat.S_IRWXO | stat.S_IWGRP):
        raise error(f"key file {path}: mode {stat.S_IMODE(info.st_mode):04o} lets other users read or replace {what}; "
                    f"accepted: 0600 (or 0640 to share it within a group). Fix with: chmod 600 {path}")


def read_key_file(path: Path, what: str, env_var: str, create: bool = True, error: type[ConfigError] = ConfigError) -> bytes:
    """The key in ``path``, created first when missing (and ``create``), after the ownership and mode checks.

    Raises:
        ConfigError (or ``error``): loose permissions, another owner, or not a key.
        FileNotFoundError: missing and ``create`` is False.
        OSError: the file cannot be created or read.
    """
    if not path.exists():
        if not create:
            raise FileNotFoundError(f"key file {path}: not found")
        create_key_file(path)
    check_key_file(path, what, env_var, error)
    return parse_hex_key(path.read_text(), f"key file {path}", error)
