"""Pixel-level steps: overlay bits above HighBit cleared, burned-in annotation status, decode check."""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset


def has_pixels(ds: Dataset) -> bool:
    return any(t in ds for t in (0x7FE00010, 0x7FE00008, 0x7FE00009))


def burned_in_status(ds: Dataset) -> str:
    """``NO``, ``YES`` or ``absent`` (only images can carry burned-in text; others report ``NO``)."""
    if not has_pixels(ds):
        return "NO"
    value = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    return value if value in ("YES", "NO") else "absent"


def clear_bits_above_high_bit(ds: Dataset) -> int:
    """Zero (or sign-extend) the bits above HighBit of native Pixel Data, where retired overlays hid.

    Returns the number of pixel values changed (0 when nothing was there, or the data is encapsulated).
    """
    elem = ds.get(0x7FE00010)
    meta = getattr(ds, "file_meta", None)
    syntax = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    if elem is None or elem.is_undefined_length or (syntax is not None and syntax.is_compressed):
        return 0
    allocated, stored = int(ds.get("BitsAllocated", 0) or 0), int(ds.get("BitsStored", 0) or 0)
    high = int(ds.get("HighBit", stored - 1) if ds.get("HighBit") is not None else stored - 1)
    if allocated not in (16, 32) or not 0 < stored < allocated or high != stored - 1:
        return 0
    little = ds.is_little_endian if ds.is_little_endian is not None else True
    dtype = np.dtype(f"{'<' if little else '>'}u{allocated // 8}")
    raw = bytes(elem.value)
    usable = len(raw) - len(raw) % dtype.itemsize
    values = np.frombuffer(raw[:usable], dtype=dtype).copy()
    low = values & np.array((1 << stored) - 1, dtype=dtype)
    if int(ds.get("PixelRepresentation", 0) or 0) == 1:
        sign = np.array(1 << high, dtype=dtype)
        ext = np.array(((1 << allocated) - 1) ^ ((1 << stored) - 1), dtype=dtype)
        cleaned = np.where(low & sign, low | ext, low)
    else:
        cleaned = low
    changed = int(np.count_nonzero(cleaned != values))
    if changed:
        elem.value = cleaned.astype(dtype).tobytes() + raw[usable:]
    return changed


def decodes(ds: Dataset) -> str | None:
    """None when the pixel data (if any) decodes to the size the header declares, else the reason."""
    if not has_pixels(ds):
        return None
    try:
        arr = ds.pixel_array
    except Exception as err:  # noqa: BLE001 (pydicom raises many types from its decoders; the class name is the reason)
        return f"pixel data does not decode ({type(err).__name__})"
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    expected = int(ds.Rows) * int(ds.Columns) * frames * int(ds.get("SamplesPerPixel", 1) or 1)
    if arr.size != expected:
        return f"pixel data decodes to {arr.size} values, the header declares {expected}"
    return None
