"""Safe private attributes (PS3.15 E.3.10, Table E.3.10-1), matched on (group, private creator, element offset).

A private element (gggg,xxee) belongs to the block reserved by the Private Creator element (gggg,00xx);
the same attribute lands in another block in another file, so it is recognised by its creator's name
and its offset ``ee`` within the block, never by the full tag. Elements of unknown creators, and
elements whose block has no creator, are never safe.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import NamedTuple

from pydicom.dataset import Dataset

from mmapps.errors import ConfigError


class SafePrivateKey(NamedTuple):
    """(group, private creator as written, element offset within the block)."""

    group: int
    creator: str
    offset: int


def _parse(entries: list[dict], origin: str) -> frozenset[SafePrivateKey]:
    keys = set()
    for k, entry in enumerate(entries):
        try:
            group, offset, creator = int(str(entry["group"]), 16), int(str(entry["offset"]), 16), str(entry["creator"]).strip()
        except (KeyError, ValueError, TypeError) as err:
            raise ConfigError(f"{origin}: safe-private entry {k}: {type(err).__name__} {err}; each entry needs 'group' (hex, odd), "
                              "'creator' (private creator text) and 'offset' (hex 00-FF)") from None
        if not group & 1 or not 0 <= offset <= 0xFF or not creator:
            raise ConfigError(f"{origin}: safe-private entry {k}: group {entry['group']!r} / offset {entry['offset']!r} / creator "
                              f"{entry['creator']!r}; accepted an odd group, an offset 00-FF and a non-empty creator")
        keys.add(SafePrivateKey(group, creator, offset))
    return frozenset(keys)


@lru_cache(maxsize=1)
def shipped_safe_private() -> frozenset[SafePrivateKey]:
    """The entries of Table E.3.10-1 shipped with mmapps (``safe_private.json``)."""
    text = resources.files("mmapps_domains.medical.deid").joinpath("safe_private.json").read_text(encoding="utf-8")
    return _parse(json.loads(text)["entries"], "safe_private.json (package data)")


def read_safe_private(path: Path) -> frozenset[SafePrivateKey]:
    """Site entries in the same JSON form as the shipped list: ``{"entries": [{"group", "creator", "offset"}...]}``."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        entries = data["entries"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"{path}: safe-private list unreadable ({type(err).__name__}); expected JSON "
                          '{"entries": [{"group": "0019", "creator": "SIEMENS MR HEADER", "offset": "0C"}]}') from None
    return _parse(entries, str(path))


def private_creator(ds: Dataset, tag: int) -> str | None:
    """The creator string reserving the block of private element ``tag`` in ``ds`` (None if absent)."""
    group, block = tag >> 16, (tag >> 8) & 0xFF
    if block < 0x10:
        return None
    elem = ds.get((group << 16) | block)
    if elem is None or elem.value in (None, b"", ""):
        return None
    value = elem.value
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return str(value).strip()


def is_safe_private(ds: Dataset, tag: int, safe: frozenset[SafePrivateKey]) -> bool:
    """Whether data element ``tag`` (private, not a creator) of ``ds`` is on the safe list."""
    creator = private_creator(ds, tag)
    return creator is not None and SafePrivateKey(tag >> 16, creator, tag & 0xFF) in safe
