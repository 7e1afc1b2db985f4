"""The grayscale pipeline as one lookup table per file: stored value -> display value in [0, 1].

Modality LUT, VOI (LUT sequence, window, or the percentile fallback) and MONOCHROME1 inversion
are evaluated once on the ``2**BitsStored`` possible stored values (at most 65 536 entries) and the
image goes through a single gather, instead of several float passes at full resolution. The
table is built by the float functions of `mmapps_domains.medical.dicom` (the reference pipeline),
so both paths agree to float32 rounding. Signed values index the table by two's complement with
the sign bit flipped (``(raw & mask) ^ sign``), which is ``value + 2**(bits-1)`` without widening.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

MAX_LUT_BITS = 16


class DisplayLut(NamedTuple):
    """``table[index]`` is the display value of stored value ``index - offset``; ``voi`` says how it was windowed."""

    table: np.ndarray
    offset: int
    voi: str


def lut_index(arr: np.ndarray, bits: int, signed: bool) -> np.ndarray:
    """Stored pixels -> uint16 table indices (bits above BitsStored masked off)."""
    raw = arr.view(arr.dtype.str.replace("i", "u")) if arr.dtype.kind == "i" else arr
    if raw.dtype != np.uint16:
        raw = raw.astype(np.uint16)
    mask = (1 << bits) - 1
    index = raw & np.uint16(mask) if bits < 16 else raw
    return index ^ np.uint16(1 << (bits - 1)) if signed else index


def histogram_percentiles(values: np.ndarray, counts: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """``np.percentile(image, qs)`` (linear method) from the values a table maps to and their pixel counts."""
    order = np.argsort(values, kind="stable")
    v, c = values[order], counts[order]
    keep = c > 0
    v, cum = v[keep], np.cumsum(c[keep])
    n = int(cum[-1])
    out = []
    for q in qs:
        rank = q / 100.0 * (n - 1)
        lo, hi = int(np.floor(rank)), int(np.ceil(rank))
        v_lo, v_hi = v[np.searchsorted(cum, lo + 1)], v[np.searchsorted(cum, hi + 1)]
        out.append(float(v_lo + (v_hi - v_lo) * (rank - lo)))
    return out


def build_display_lut(ds: Any, path: Path, bits: int, signed: bool, photometric: str, counts: Callable[[], np.ndarray],
                      modality_lut: Callable, voi: Callable) -> DisplayLut:
    """The table for one file.

    Args:
        ds, path: the dataset and its file (errors name it).
        bits, signed: BitsStored and PixelRepresentation.
        photometric: MONOCHROME1 inverts.
        counts: ``() -> pixel count per table index`` (only called for the percentile fallback).
        modality_lut, voi: the reference float steps ``(values, ds, path)``.
    """
    offset = (1 << (bits - 1)) if signed else 0
    stored = np.arange(1 << bits, dtype=np.int64) - offset
    stored = stored.astype(np.int32 if signed else np.uint16)
    values = modality_lut(stored, ds, path)
    if "VOILUTSequence" not in ds and (ds.get("WindowCenter") is None or ds.get("WindowWidth") is None):
        low, high = histogram_percentiles(np.asarray(values, dtype=np.float64), counts(), (0.5, 99.5))
        if not np.isfinite(low) or high <= low:
            high = low + 1.0
        display, how = np.clip((values - low) / (high - low), 0.0, 1.0), "percentile 0.5-99.5 (no VOI in file)"
    else:
        display, how = voi(values, ds, path)
    if photometric == "MONOCHROME1":
        display = 1.0 - display
    return DisplayLut(np.ascontiguousarray(display, dtype=np.float32), offset, how)


def lut_degenerate_share(table: np.ndarray, counts: np.ndarray) -> tuple[float, float, float]:
    """(share of pixels at 0 or 1, lowest and highest display value present) from the histogram."""
    present = counts > 0
    saturated = counts[(table <= 0.0) | (table >= 1.0)].sum() / counts.sum()
    return float(saturated), float(table[present].min()), float(table[present].max())


def degenerate_share_from_index(table: np.ndarray, index: np.ndarray, counts: Callable[[], np.ndarray]) -> tuple[float, float, float]:
    """`lut_degenerate_share` without a histogram when the table is monotonic over the indices present.

    A monotonic table saturates on a prefix and a suffix of index values, so two comparisons
    (cheap uint16 passes) count the saturated pixels; otherwise the histogram is used.
    """
    low_i, high_i = int(index.min()), int(index.max())
    part = table[low_i : high_i + 1]
    steps = np.diff(part)
    if not (np.all(steps >= 0) or np.all(steps <= 0)):
        return lut_degenerate_share(table, counts())
    low_sat, high_sat = part <= 0.0, part >= 1.0
    saturated = 0
    for mask in (low_sat, high_sat):
        if mask.any():
            where = np.flatnonzero(mask)
            if where[0] == 0:  # a prefix of the present range
                saturated += np.count_nonzero(index <= low_i + int(np.flatnonzero(~mask)[0] - 1 if (~mask).any() else len(part) - 1))
            else:  # a suffix
                saturated += np.count_nonzero(index >= low_i + int(where[0]))
    return float(min(saturated, index.size) / index.size), float(part.min()), float(part.max())
