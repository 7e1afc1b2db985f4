"""API keys: read from a file or the environment only, kept as HMAC-SHA256 digests, scoped.

A key never appears on a command line, in a log or in the audit log (which names the key id).
At start-up every key is reduced to ``HMAC-SHA256(pepper, key)``; a presented key is digested the
same way and compared with every stored digest by `hmac.compare_digest` (no early exit, so the
time does not tell which entry was close). The pepper is a per-user secret file
(`mmapps.keyfile`: ``$MMAPPS_SERVE_PEPPER_FILE``, else ``~/.config/mmapps/serve-pepper.key``,
created 0600, refused when others can read it), so a stolen keys file alone does not let anyone
test guesses offline.

Keys file (``--keys-file``), one key per line, ``#`` comments::

    <key_id> <scopes> hmac-sha256:<64 hex digits>      # written by `python -m mmapps.serve.auth new`

Environment (``MMAPPS_API_KEYS``), keys separated by new lines or ``;``::

    <key_id>:<scopes>:<secret>

Scopes are comma-separated: ``predict`` (the predict and inference endpoints) and ``admin``
(versions, reload, metrics, docs; implies ``predict``). Several keys may share a scope, which is
how keys are rotated: add the new key, move callers, remove the old one, reload.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from mmapps.errors import ConfigError
from mmapps.keyfile import read_key_file, user_config_dir

SCOPES = ("predict", "admin")
ENV_KEYS = "MMAPPS_API_KEYS"
ENV_PEPPER = "MMAPPS_SERVE_PEPPER_FILE"
_KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MIN_SECRET_CHARS = 24


@dataclass(frozen=True)
class ApiKey:
    """One accepted key: its id (logged), its scopes and its digest (never the key)."""

    key_id: str
    scopes: frozenset[str]
    digest: bytes

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


def pepper_path() -> Path:
    return Path(os.environ.get(ENV_PEPPER) or user_config_dir() / "serve-pepper.key").expanduser()


def load_pepper() -> bytes:
    """The per-user secret the key digests are made with (created on first use)."""
    return read_key_file(pepper_path(), "the secret that digests the serving API keys", ENV_PEPPER)


def digest(pepper: bytes, secret: str) -> bytes:
    return hmac.new(pepper, secret.encode("utf-8"), hashlib.sha256).digest()


def _scopes(text: str, where: str) -> frozenset[str]:
    scopes = frozenset(s.strip() for s in text.split(",") if s.strip())
    unknown = sorted(scopes - set(SCOPES))
    if not scopes or unknown:
        raise ConfigError(f"{where}: scopes {text!r}: expected a comma-separated subset of {', '.join(SCOPES)}")
    return scopes


def _key_id(text: str, where: str) -> str:
    if not _KEY_ID.match(text):
        raise ConfigError(f"{where}: key id of {len(text)} characters: expected 1-64 letters, digits, '_', '.' or '-'")
    return text


def parse_keys_file(path: Path) -> list[ApiKey]:
    """The keys of a keys file (digests only). Raises `ConfigError` naming the line (never its digest)."""
    keys = []
    for number, raw in enumerate(Path(path).read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"keys file {path} line {number}"
        parts = line.split()
        if len(parts) != 3 or not parts[2].startswith("hmac-sha256:"):
            raise ConfigError(f"{where}: expected '<key_id> <scopes> hmac-sha256:<64 hex digits>' (3 fields), found {len(parts)} field(s); "
                              "write lines with `python -m mmapps.serve.auth new <key_id> --scopes predict`")
        try:
            value = bytes.fromhex(parts[2].removeprefix("hmac-sha256:"))
        except ValueError:
            value = b""
        if len(value) != 32:
            raise ConfigError(f"{where}: the digest is not 64 hexadecimal digits (an HMAC-SHA256)")
        keys.append(ApiKey(_key_id(parts[0], where), _scopes(parts[1], where), value))
    return keys


def parse_env_keys(text: str, pepper: bytes) -> list[ApiKey]:
    """Keys given in ``MMAPPS_API_KEYS`` (``id:scopes:secret``), digested at once."""
    keys = []
    for number, item in enumerate((p.strip() for p in re.split(r"[;\n]", text)), 1):
        if not item:
            continue
        where = f"{ENV_KEYS} entry {number}"
        parts = item.split(":", 2)
        if len(parts) != 3:
            raise ConfigError(f"{where}: expected '<key_id>:<scopes>:<secret>', found {len(parts)} ':'-separated field(s)")
        if len(parts[2]) < MIN_SECRET_CHARS:
            raise ConfigError(f"{where}: the secret has {len(parts[2])} characters; at least {MIN_SECRET_CHARS} are required "
                              "(e.g. `python -c \"import secrets; print(secrets.token_urlsafe(32))\"`)")
        keys.append(ApiKey(_key_id(parts[0], where), _scopes(parts[1], where), digest(pepper, parts[2])))
    return keys


class KeyStore:
    """The accepted keys; `check` maps a presented secret to its `ApiKey` or None."""

    def __init__(self, keys: list[ApiKey], pepper: bytes) -> None:
        ids = [k.key_id for k in keys]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ConfigError(f"API keys: key id(s) {duplicates} appear more than once; give every key its own id")
        self.keys = list(keys)
        self._pepper = pepper

    @classmethod
    def load(cls, keys_file: Path | None = None, environ: dict[str, str] | None = None) -> KeyStore:
        """Keys from ``keys_file`` and ``$MMAPPS_API_KEYS`` (either or both)."""
        environ = os.environ if environ is None else environ
        pepper = load_pepper()
        keys = parse_keys_file(keys_file) if keys_file is not None else []
        keys += parse_env_keys(environ.get(ENV_KEYS, ""), pepper)
        return cls(keys, pepper)

    def __len__(self) -> int:
        return len(self.keys)

    def check(self, secret: str | None) -> ApiKey | None:
        if not secret:
            return None
        presented = digest(self._pepper, secret)
        found = None
        for key in self.keys:  # every entry is compared: the time does not depend on which one matches
            if hmac.compare_digest(presented, key.digest):
                found = key
        return found


def main(argv: list[str] | None = None) -> int:
    """``python -m mmapps.serve.auth new <key_id> [--scopes predict,admin]``: print a keys-file line; the secret goes to stderr once."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m mmapps.serve.auth", description="make an API key for mmapps serve")
    sub = parser.add_subparsers(dest="command", required=True)
    new = sub.add_parser("new", help="print a keys-file line on stdout and the new secret on stderr")
    new.add_argument("key_id")
    new.add_argument("--scopes", default="predict")
    args = parser.parse_args(argv)
    _key_id(args.key_id, "key id")
    scopes = _scopes(args.scopes, "--scopes")
    secret = secrets.token_urlsafe(32)
    print(f"{args.key_id} {','.join(sorted(scopes))} hmac-sha256:{digest(load_pepper(), secret).hex()}")
    print(f"API key for {args.key_id} (shown once, give it to the caller): {secret}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
