"""The user-held key behind every replaced UID, pseudonym and date shift (HMAC-SHA256; no built-in key).

The same key gives the same new UID for the same old one in every run, so a study exported in two
batches stays one study, and the same pseudonym for the same PatientID, so patient-level splits survive.
The key itself never reaches an output or a report: only a short fingerprint (an HMAC of a fixed
label) is printed, so two runs can be checked to have used the same key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from mmapps.errors import ConfigError

MIN_KEY_BYTES = 16  # 128 bits
MAX_SHIFT_DAYS = 3652  # dates move back by 1 .. ~10 years


@dataclass(frozen=True)
class DeidKey:
    """A secret key and the keyed mappings derived from it.

    Args:
        secret: the key bytes (at least `MIN_KEY_BYTES`).
    """

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) < MIN_KEY_BYTES:
            raise ConfigError(f"de-identification key: {len(self.secret)} byte(s) found, at least {MIN_KEY_BYTES} bytes "
                              "(128 bits) accepted; create one with `openssl rand -hex 32 > deid.key`")

    def _digest(self, purpose: str, value: str) -> bytes:
        return hmac.new(self.secret, purpose.encode() + b"\x00" + value.encode("utf-8", "surrogateescape"), hashlib.sha256).digest()

    def uid(self, old: str) -> str:
        """``2.25.<128-bit integer>`` from HMAC(key, old UID): at most 44 characters, never a leading zero."""
        return "2.25." + str(int.from_bytes(self._digest("uid", old.strip())[:16], "big"))

    def pseudonym(self, patient_id: str) -> str:
        """A 120-bit keyed pseudonym of a PatientID (24 base32 characters, fits LO)."""
        return base64.b32encode(self._digest("patient-id", patient_id.strip())[:15]).decode("ascii")

    def date_shift_days(self, patient_id: str) -> int:
        """Days to move this patient's dates back (1 .. `MAX_SHIFT_DAYS`), the same in every run."""
        return 1 + int.from_bytes(self._digest("date-shift", patient_id.strip())[:8], "big") % MAX_SHIFT_DAYS

    def dummy_uid(self, label: str) -> str:
        """A UID for an element that had none (derived from a label such as the file's content hash)."""
        return self.uid("mmapps-dummy:" + label)

    @property
    def fingerprint(self) -> str:
        """8 hex characters identifying the key without revealing it."""
        return self._digest("fingerprint", "mmapps-deid")[:4].hex()


def load_key(key_file: Path | None = None, key_env: str | None = None) -> tuple[DeidKey, list[str]]:
    """Read the key from a file or an environment variable named by the user; refuse to run without one.

    The file's bytes (a trailing newline removed) are the key; hex text such as ``openssl rand -hex 32``
    writes is used as it is. Returns the key and warnings (a key file that others can read).

    Raises:
        ConfigError: no key given, both given, an empty or unset variable, a key shorter than 128 bits.
        FileNotFoundError: the key file does not exist.
    """
    if (key_file is None) == (key_env is None):
        raise ConfigError("de-identification needs a key of your own (it makes UIDs and pseudonyms consistent across runs and "
                          "is never written to an output): give exactly one of --key-file PATH or --key-env VARIABLE; "
                          f"{'both were given' if key_file is not None else 'none was given'}. Create one with "
                          "`openssl rand -hex 32 > deid.key && chmod 600 deid.key` and keep it away from the de-identified data")
    warnings: list[str] = []
    if key_file is not None:
        path = Path(key_file)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: de-identification key file not found (--key-file)")
        secret = path.read_bytes().rstrip(b"\r\n")
        if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            warnings.append(f"key file {path} can be read by other users (mode {stat.S_IMODE(path.stat().st_mode):o}); chmod 600 it")
    else:
        value = os.environ.get(str(key_env))
        if not value:
            raise ConfigError(f"--key-env {key_env}: the environment variable is {'empty' if value == '' else 'not set'}; "
                              "it must hold the de-identification key (at least 16 bytes)")
        secret = value.encode("utf-8")
    return DeidKey(secret), warnings
