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
import unicodedata
from functools import lru_cache
from pathlib import Path

from mmapps.keyfile import parse_hex_key, read_key_file, user_config_dir

KEY_ENV = "MMAPPS_CHAT_PSEUDONYM_KEY"
KEY_FILE_ENV = "MMAPPS_CHAT_PSEUDONYM_KEY_FILE"
DIGEST_BYTES = 8


def key_file_path() -> Path:
    """The key file: ``$MMAPPS_CHAT_PSEUDONYM_KEY_FILE``, else the per-installation file in the user config folder."""
    if os.environ.get(KEY_FILE_ENV):
        return Path(os.environ[KEY_FILE_ENV]).expanduser()
    return user_config_dir() / "chat-pseudonym.key"


@lru_cache(maxsize=4)
def _key_for(env_key: str | None, file: str) -> bytes:
    if env_key:
        return parse_hex_key(env_key, f"chat pseudonym key ${KEY_ENV}")
    return read_key_file(Path(file), "the key that protects chat user names", KEY_FILE_ENV)


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
