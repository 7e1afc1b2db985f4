"""The on-disk format of one cache entry: signed safetensors, arrays and plain JSON metadata only.

Layout::

    b"MMAPPSC2"  (8 bytes, format magic)
    tag          (32 bytes, HMAC-SHA256 under the user's secret of everything after it)
    name         (40 bytes, the entry's name: hex digits)
    payload      (a safetensors file: the arrays, and the metadata as JSON in ``__metadata__["mmapps"]``)

Nothing in an entry is ever executed or unpickled: safetensors holds raw little-endian arrays and
a JSON header. The tag binds the payload to its entry name, so an entry is refused if a byte was
changed, if it was cut short by a killed writer, or if a valid entry was copied under another name.
"""

from __future__ import annotations

import hmac
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

MAGIC = b"MMAPPSC2"
_TAG = 32
_SIGNED = len(MAGIC) + _TAG  # the tag covers data[_SIGNED:]: name + payload, one contiguous buffer
_NAME = 40


class EntryRefused(ValueError):
    """An entry that failed its checks (the reason says which); it is deleted and rebuilt."""




def plain_metadata(meta: Mapping[str, Any]) -> dict[str, Any]:
    """``meta`` as plain JSON values (tuples become lists), exactly as a cache hit returns it.

    Raises:
        TypeError: a value that is not JSON (an object, bytes, a NumPy scalar): entries hold plain metadata only.
    """
    return json.loads(json.dumps(dict(meta), allow_nan=True))


def encode_entry(secret: bytes, name: str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> bytes:
    """Serialise and sign one entry (see the module docstring for the layout)."""
    from safetensors.numpy import save

    payload = save({k: np.ascontiguousarray(v) for k, v in arrays.items()}, metadata={"mmapps": json.dumps(dict(meta))})
    signed = _name_bytes(name) + payload
    return MAGIC + hmac.digest(secret, signed, "sha256") + signed


def _name_bytes(name: str) -> bytes:
    raw = name.encode()
    if len(raw) != _NAME:
        raise ValueError(f"cache entry names are {_NAME} characters, found {name!r}")
    return raw


_DTYPES = {code: np.dtype(np_code) for code, np_code in {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
    "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?"}.items()}


def _parse_safetensors(payload: memoryview) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Arrays (views into ``payload``, no copy) and metadata of a safetensors buffer, every offset checked."""
    header_len = int.from_bytes(payload[:8], "little")
    if header_len > len(payload) - 8:
        raise ValueError(f"header length {header_len} beyond the {len(payload)}-byte payload")
    header = json.loads(bytes(payload[8 : 8 + header_len]))
    data = payload[8 + header_len :]
    meta = json.loads(header.pop("__metadata__", {}).get("mmapps", "{}"))
    arrays = {}
    for key, spec in header.items():
        dtype = _DTYPES[spec["dtype"]]
        shape = tuple(int(n) for n in spec["shape"])
        begin, end = (int(n) for n in spec["data_offsets"])
        if not 0 <= begin <= end <= len(data) or end - begin != math.prod(shape) * dtype.itemsize:
            raise ValueError(f"tensor {key!r}: offsets {begin}-{end} do not fit shape {shape} of {dtype} in {len(data)} bytes")
        arrays[key] = np.frombuffer(data[begin:end], dtype=dtype).reshape(shape)
    if not isinstance(meta, dict):
        raise ValueError("metadata is not a mapping")
    return arrays, meta


def decode_entry(secret: bytes, name: str, data: bytes | bytearray) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Check and deserialise one entry; the arrays are views into ``data`` (writable when it is a bytearray).

    Raises:
        EntryRefused: not an mmapps entry (e.g. a pickle dropped in the folder), a bad signature
            (tampered, torn, copied from another entry or signed by another key), or a bad payload.
    """
    if len(data) < _SIGNED + _NAME + 8 or data[: len(MAGIC)] != MAGIC:
        raise EntryRefused("not an mmapps cache entry (wrong magic or too short)")
    view = memoryview(data)
    if not hmac.compare_digest(view[len(MAGIC) : _SIGNED], hmac.digest(secret, view[_SIGNED:], "sha256")):
        raise EntryRefused("signature mismatch (tampered, truncated, or written under another key)")
    if view[_SIGNED : _SIGNED + _NAME] != _name_bytes(name):
        raise EntryRefused("signed for another entry name (a valid entry copied or replayed under this name)")
    payload = view[_SIGNED + _NAME :]
    try:
        return _parse_safetensors(payload)
    except (ValueError, KeyError, TypeError) as err:  # signed but unparsable: another format version
        raise EntryRefused(f"unreadable payload ({type(err).__name__}: {err})") from None
