"""Keyed pseudonyms for chat user names: a secret key the user or the installation holds, 64-bit output.

A pseudonym is ``user-`` + the first 8 bytes (16 hex digits) of HMAC-SHA256(key, name), the name
NFKC-normalised, stripped and case-folded. Without the key, a list of candidate names cannot be
turned into pseudonyms, so it cannot reverse them; 64 bits keep accidental collisions away
(about one pair in 10^9 among 200 000 distinct names).

The key, in this order:

1. ``$MMAPPS_CHAT_PSEUDONYM_KEY``: at least 32 hexadecimal digits, held by the user (one key
   for all sites of a deployment keeps a user's pseudonym the same across them);
2. the file named by ``$MMAPPS_CHAT_PSEUDONYM_KEY_FILE``;
3. the per-installation file ``$XDG_CONFIG_HOME/mmapps/chat-pseudonym.key`` (else
   ``~/.config/mmapps/chat-pseudonym.key``), created on first use from `secrets` with mode 0600.

A key file that others can read or replace is refused (as ssh refuses a loose private key). The
key is never written to any output: not to logs, configs, checkpoints, caches or reports.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
import unicodedata
from functools import lru_cache
from pathlib import Path

from mmapps.errors import ConfigError

KEY_ENV = "MMAPPS_CHAT_PSEUDONYM_KEY"
KEY_FILE_ENV = "MMAPPS_CHAT_PSEUDONYM_KEY_FILE"
DIGEST_BYTES = 8


def key_file_path() -> Path:
    """The key file: ``$MMAPPS_CHAT_PSEUDONYM_KEY_FILE``, else the per-installation file in the user config folder."""
    if os.environ.get(KEY_FILE_ENV):
        return Path(os.environ[KEY_FILE_ENV]).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config").expanduser()
    return base / "mmapps" / "chat-pseudonym.key"


def _parse(text: str, where: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) < 16:
        raise ConfigError(f"chat pseudonym key {where}: expected at least 32 hexadecimal digits (a 128-bit secret), "
                          f"found {len(text.strip())} characters that are not one; generate one with: python -c \"import secrets; print(secrets.token_hex(32))\"")
    return key


def _create(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32) + "\n")
        try:
            os.link(tmp, path)  # atomic create-if-absent: two first runs at once keep one key
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)


def _read_file(path: Path) -> bytes:
    if not path.exists():
        _create(path)
    info = path.stat()
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise ConfigError(f"chat pseudonym key file {path}: owned by uid {info.st_uid}, not by you; use your own key ({KEY_FILE_ENV})")
    if stat.S_IMODE(info.st_mode) & (stat.S_IRWXO | stat.S_IWGRP):
        raise ConfigError(f"chat pseudonym key file {path}: mode {stat.S_IMODE(info.st_mode):04o} lets other users read or replace "
                          f"the key that protects chat user names; accepted: 0600 or 0640. Fix with: chmod 600 {path}")
    return _parse(path.read_text(), f"file {path}")


@lru_cache(maxsize=4)
def _key_for(env_key: str | None, file: str) -> bytes:
    return _parse(env_key, f"${KEY_ENV}") if env_key else _read_file(Path(file))


def pseudonym_key() -> bytes:
    """The secret key (see the module docstring for where it comes from).

    Raises:
        ConfigError: a malformed key, or a key file with loose permissions or another owner.
    """
    return _key_for(os.environ.get(KEY_ENV) or None, str(key_file_path()))


def pseudonym(name: str, key: bytes | None = None) -> str:
    """Stable 64-bit pseudonym of a user name: same name and key -> same pseudonym, across files and runs."""
    normal = unicodedata.normalize("NFKC", name).strip().casefold()
    digest = hmac.new(pseudonym_key() if key is None else key, normal.encode("utf-8"), hashlib.sha256).digest()
    return f"user-{digest[:DIGEST_BYTES].hex()}"
