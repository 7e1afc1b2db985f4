"""The grayscale pipeline as one lookup table per file: stored value -> display value in [0, 1].

Modality LUT, VOI (LUT sequence, window, or the percentile fallback) and MONOCHROME1 inversion
are evaluated once on the stored values between the image's minimum and maximum (at most the
``2**BitsStored`` possible ones) and the image goes through a single gather, instead of several
float passes at full resolution. When that table is a clipped straight line over the values
present (a LINEAR window, the percentile fallback, MONOCHROME1 included), `ClipAffine` describes it,
so the caller can clip and resize the stored values and apply the line to the small image instead
(`mmapps_domains.medical.dicom_resize`). The
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
    """``table[index - start]`` is the display value of stored value ``index - offset``; ``voi`` says how it was windowed.

    ``exact`` is the same table in float64 (what `clip_affine` fits).
    """

    table: np.ndarray
    offset: int
    voi: str
    start: int
    exact: np.ndarray


class ClipAffine(NamedTuple):
    """``display = clip(slope * index + intercept, 0, 1)``, i.e. ``slope * clip(index, low, high) + intercept``."""

    slope: float
    intercept: float
    low: float
    high: float


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
                      modality_lut: Callable, voi: Callable, span: tuple[int, int] | None = None) -> DisplayLut:
    """The table for one file.

    Args:
        ds, path: the dataset and its file (errors name it).
        bits, signed: BitsStored and PixelRepresentation.
        photometric: MONOCHROME1 inverts.
        counts: ``() -> pixel count per table index`` over ``span`` (only called for the percentile fallback).
        modality_lut, voi: the reference float steps ``(values, ds, path)``.
        span: the (lowest, highest) index present; the table covers them only (None: every index).
    """
    offset = (1 << (bits - 1)) if signed else 0
    start, stop = span if span is not None else (0, (1 << bits) - 1)
    stored = np.arange(start, stop + 1, dtype=np.int64) - offset
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
    exact = np.asarray(display, dtype=np.float64)
    return DisplayLut(np.ascontiguousarray(display, dtype=np.float32), offset, how, start, exact)


def clip_affine(lut: DisplayLut, tolerance: float = 1e-6) -> ClipAffine | None:
    """The clipped line the table is over its indices, or None (SIGMOID, a curved VOI LUT, < 2 unclipped values).

    The line goes through the first and last unclipped entries and must reproduce every entry
    within ``tolerance``.
    """
    exact = lut.exact
    inside = np.flatnonzero((exact > 0.0) & (exact < 1.0))
    if inside.size < 2 or inside[-1] == inside[0]:
        return None
    j0, j1 = int(inside[0]), int(inside[-1])
    slope = (exact[j1] - exact[j0]) / (j1 - j0)
    intercept = exact[j0] - slope * (lut.start + j0)
    index = np.arange(lut.start, lut.start + exact.size, dtype=np.float64)
    if np.max(np.abs(np.clip(slope * index + intercept, 0.0, 1.0) - exact)) > tolerance:
        return None
    low, high = sorted(((0.0 - intercept) / slope, (1.0 - intercept) / slope))
    return ClipAffine(float(slope), float(intercept), float(low), float(high))


def lut_degenerate_share(table: np.ndarray, counts: np.ndarray) -> tuple[float, float, float]:
    """(share of pixels at 0 or 1, lowest and highest display value present) from the histogram."""
    present = counts > 0
    saturated = counts[(table <= 0.0) | (table >= 1.0)].sum() / counts.sum()
    return float(saturated), float(table[present].min()), float(table[present].max())


def degenerate_share_from_index(lut: DisplayLut, index: np.ndarray, counts: Callable[[], np.ndarray],
                                monotonic: bool = False) -> tuple[float, float, float]:
    """`lut_degenerate_share` without a histogram when the table (covering exactly the indices present) is monotonic.

    A monotonic table saturates on a prefix and a suffix of index values, so at most two
    comparisons (cheap uint16 passes, none when nothing saturates) count the saturated pixels;
    otherwise the histogram over the table's span is used. ``monotonic``: already known (a `clip_affine` line).
    """
    part = lut.table
    if not monotonic:
        steps = np.diff(part)
        if not (np.all(steps >= 0) or np.all(steps <= 0)):
            return lut_degenerate_share(part, counts())
    saturated = 0
    for mask in (part <= 0.0, part >= 1.0):
        if not mask.any():
            continue
        where = np.flatnonzero(mask)
        if where[0] == 0:  # a prefix of the span: indices up to the last saturated one
            last = int(np.flatnonzero(~mask)[0]) - 1 if (~mask).any() else part.size - 1
            saturated += index.size if last == part.size - 1 else np.count_nonzero(index <= lut.start + last)
        else:  # a suffix
            saturated += np.count_nonzero(index >= lut.start + int(where[0]))
    return float(min(saturated, index.size) / index.size), float(part.min()), float(part.max())
