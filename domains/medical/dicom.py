"""DICOM chest radiograph reader: stored values -> modality LUT -> VOI LUT / window -> MONOCHROME1 inversion.

The reader follows MONAI's ``ImageReader`` contract (``verify_suffix``, ``read``) but returns a
`XrayImage` ``(array, metadata)`` already in display space, in ``[0, 1]``, where 1 is bright
(dense tissue white, as a radiologist reads the film), whatever the photometric interpretation.

Pixel pipeline (DICOM PS3.3 C.11, PS3.4 N.2 "grayscale pipeline"):

1. Stored values, honouring ``BitsStored`` and ``PixelRepresentation``: bits above ``HighBit``
   are masked off and signed values are sign-extended from ``BitsStored``.
2. Modality LUT: ``ModalityLUTSequence`` or ``RescaleSlope`` / ``RescaleIntercept``.
3. VOI: the first ``VOILUTSequence`` item, else the first ``WindowCenter`` / ``WindowWidth``
   pair with ``VOILUTFunction`` (LINEAR, LINEAR_EXACT, SIGMOID); with neither, the 0.5-99.5
   percentile range of the image (a documented fallback, as viewers do).
4. ``MONOCHROME1`` inversion last, so the window is applied in the stored-value sense.

Multi-frame policy (``multiframe``): CR / DX radiographs are single-frame. A multi-frame object
gives its first frame (``"first"``, default, noted as ``frames`` in the metadata), every frame
(``"all"``: an array ``(F, H, W)``), or is rejected (``"reject"``).

Colour images (``allow_color``): RGB, YBR and PALETTE COLOR become BT.601 luminance and skip the
modality LUT and VOI (`mmapps_domains.medical.dicom_color`).

Rejected with a reason (`DicomReadError`): not DICOM, truncated or corrupt, no pixel data,
non-image objects (structured reports, RT objects, presentation states, DICOMDIR), For Processing
data, a modality outside ``allowed_modalities`` (default CR and DX; when ``Modality`` is absent the
SOP class names it, see `mmapps_domains.medical.dicom_open`), colour images unless ``allow_color``,
transfer syntaxes no installed decoder handles, malformed LUT sequences, and (`DegenerateImageError`,
with ``skip_degenerate``) constant images or images >= 95 % saturated after windowing.

Patient identifiers never enter the returned metadata: only the fields in `XrayMetadata`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
from mmapps_domains.medical.dicom_lut import (
    MAX_LUT_BITS,
    build_display_lut,
    clip_affine,
    degenerate_share_from_index,
    lut_index,
)
from mmapps_domains.medical.dicom_open import (  # noqa: F401 - re-exported: the reader's error types live here too
    DegenerateImageError,
    DicomReadError,
    check_is_radiograph,
    open_dataset,
)
from mmapps_domains.medical.dicom_open import (
    fail as _fail,
)
from mmapps_domains.medical.dicom_pixels import decode_pixels, native_frame
from mmapps_domains.medical.dicom_resize import (
    area_resize,
    resize_then_window,
    resized_shape,
)
from mmapps_domains.medical.dicom_syntax import check_pixel_data_matches_syntax

MultiframePolicy = Literal["first", "all", "reject"]
# An image with at least this share of its pixels at 0 or 1 after windowing is degenerate.
DEGENERATE_SATURATION = 0.95
_FRONTAL = {"PA", "AP"}
_LATERAL = {"LL", "RL", "LATERAL", "LAT", "LLD", "RLD"}


class XrayMetadata(dict):
    """Non-identifying metadata of a radiograph (a plain dict subclass so it serialises as JSON).

    Keys: ``modality``, ``view_position`` (raw ViewPosition), ``view`` (PA / AP / LATERAL / UNKNOWN),
    ``frontal`` (bool), ``sex`` (M / F / O / None), ``age`` (years, float or None), ``pixel_spacing``
    ((row, col) mm or None), ``spacing_source``, ``photometric``, ``bits_stored``,
    ``pixel_representation``, ``transfer_syntax``, ``sop_class``, ``rows``, ``columns``, ``frames``,
    ``voi`` (how values were windowed), ``burned_in_annotation``, ``body_part``.
    """


class XrayImage(NamedTuple):
    """A decoded radiograph: ``array`` float32 ``(H, W)`` (or ``(F, H, W)``) in [0, 1], and its metadata."""

    array: np.ndarray
    metadata: XrayMetadata


def read_dicom_xray(
    path: str | Path,
    *,
    allowed_modalities: Sequence[str] | None = ("CR", "DX"),
    multiframe: MultiframePolicy = "first",
    allow_color: bool = False,
    skip_degenerate: bool = True,
    decode_size: int | None = None,
    pipeline: Literal["lut", "reference"] = "lut",
    resize_to: int | None = None,
) -> XrayImage:
    """Read one radiograph into display space.

    Args:
        path: DICOM file (with or without preamble / file meta).
        allowed_modalities: accepted modalities (``Modality``, or the SOP class's when it is absent);
            None accepts any image modality.
        multiframe: policy for multi-frame objects (see the module docstring).
        allow_color: convert RGB / YBR / PALETTE COLOR images to luminance (BT.601) instead of rejecting them.
        skip_degenerate: refuse constant images and images with >= 95 % of pixels saturated after windowing.
        decode_size: the longest side the caller will downsample to; JPEG 2000 is then decoded at the
            reduced resolution level that keeps >= 2x that size (`mmapps_domains.medical.dicom_j2k`), so
            the array may be smaller than Rows x Columns (``metadata["decoded_shape"]``). None: full size.
        pipeline: ``lut`` (one lookup table per file, `mmapps_domains.medical.dicom_lut`) or
            ``reference`` (the float steps at full resolution; same values, kept to test against).
        resize_to: return the image area-resized (MONAI ``Resize(size_mode="longest", mode="area")``:
            the longest side of Rows x Columns to this size); a window that is a clipped line is then
            applied after the resize (`mmapps_domains.medical.dicom_resize`). None: no resize.

    Returns:
        `XrayImage` with a float32 array in [0, 1] (1 = bright) and `XrayMetadata`.

    Raises:
        DegenerateImageError: a degenerate image (with ``skip_degenerate``).
        DicomReadError: for any other file that cannot be used (the message names the file and the reason).
        FileNotFoundError: when the path does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: DICOM file not found")
    ds = open_dataset(path)
    modality = check_is_radiograph(ds, path, allowed_modalities)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1 and multiframe == "reject":
        raise _fail(path, f"NumberOfFrames is {frames}; multi-frame objects are rejected (multiframe='reject'); accepted: 1 frame, or set multiframe to 'first' or 'all'")
    header_photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if header_photometric not in ("MONOCHROME1", "MONOCHROME2") and not allow_color:
        raise _fail(path, f"PhotometricInterpretation is {header_photometric!r}; chest radiographs must be MONOCHROME1 or MONOCHROME2 (set data.options.allow_color=true to convert colour images to luminance)")
    check_pixel_data_matches_syntax(ds, path)
    index = 0 if frames > 1 and multiframe == "first" else None
    mono = header_photometric.startswith("MONO")
    reduced = _decode_reduced(ds, frames, index, decode_size) if decode_size and mono else None
    native = native_frame(ds, index) if reduced is None and pipeline == "lut" and mono else None
    if reduced is not None:
        stored, photometric = reduced
    elif native is not None:
        stored, photometric = native, header_photometric
    else:
        stored, photometric = decode_pixels(ds, path, index=index)
    decoded_shape = tuple(stored.shape[-2:])
    rows, columns = int(ds.get("Rows", 0) or 0) or stored.shape[-2], int(ds.get("Columns", 0) or 0) or stored.shape[-1]
    out_shape = resized_shape(rows, columns, resize_to) if resize_to else None
    bits, signed = int(ds.get("BitsStored", ds.get("BitsAllocated", 16)) or 16), int(ds.get("PixelRepresentation", 0) or 0) == 1
    resized = False
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        from mmapps_domains.medical.dicom_color import color_to_luminance

        display, voi = color_to_luminance(stored, photometric, ds, path), f"none (colour {photometric}: display values)"
        photometric = "MONOCHROME2"
    elif pipeline == "lut" and stored.dtype.kind in "iu" and stored.dtype.itemsize <= 2 and bits <= MAX_LUT_BITS:
        display, voi, resized = _display_by_lut(stored, ds, path, bits, signed, photometric, skip_degenerate, out_shape)
        skip_degenerate = False  # checked on the histogram
    else:
        stored = _honour_bits_stored(stored, bits, int(signed))
        values = _apply_modality_lut(stored, ds, path)
        display, voi = _apply_voi(values, ds, path)
        if photometric == "MONOCHROME1":
            display = 1.0 - display
    display = np.ascontiguousarray(display, dtype=np.float32)
    if skip_degenerate:
        check_not_degenerate(display, path, voi)
    if out_shape is not None and not resized:
        display = area_resize(display, out_shape)
    meta = _metadata(ds, modality, photometric, frames, voi)
    meta["decoded_shape"] = decoded_shape
    return XrayImage(display, meta)


def _decode_reduced(ds: Any, frames: int, index: int | None, decode_size: int) -> tuple[np.ndarray, str] | None:
    from mmapps_domains.medical.dicom_j2k import decode_reduced
    from pydicom.encaps import generate_frames

    if frames > 1 and index is None:
        return None
    try:
        frame = next(generate_frames(ds.PixelData, number_of_frames=frames))
    except Exception:  # noqa: BLE001 - the full decode then reports the problem
        return None
    found = decode_reduced(ds, frame, decode_size)
    return (found[0], str(ds.PhotometricInterpretation).strip().upper()) if found is not None else None


def _display_by_lut(stored: np.ndarray, ds: Any, path: Path, bits: int, signed: bool, photometric: str,
                    skip_degenerate: bool, out_shape: tuple[int, int] | None) -> tuple[np.ndarray, str, bool]:
    """Display image through the file's table -> (image, voi, resized to ``out_shape`` already)."""
    if not signed and stored.dtype.kind == "u" and int(stored.max()) < (1 << bits):
        index = stored  # no bit above BitsStored is set: the stored values are the indices
    else:
        index = lut_index(stored, bits, signed)
    low, high = int(index.min()), int(index.max())
    memo: list[np.ndarray] = []

    def counts() -> np.ndarray:
        if not memo:
            memo.append(np.bincount(index.ravel(), minlength=high + 1)[low:])
        return memo[0]

    lut = build_display_lut(ds, path, bits, signed, photometric, counts, _apply_modality_lut, _apply_voi, span=(low, high))
    line = clip_affine(lut) if out_shape is not None and index.ndim == 2 else None
    if skip_degenerate:
        _refuse_degenerate(*degenerate_share_from_index(lut, index, counts, monotonic=line is not None), path, lut.voi)
    if line is not None:
        return resize_then_window(index, (low, high), line, out_shape), lut.voi, True
    display = np.take(lut.table, index - index.dtype.type(low) if low else index)
    return (area_resize(display, out_shape), lut.voi, True) if out_shape is not None else (display, lut.voi, False)


def check_not_degenerate(display: np.ndarray, path: Path, voi: str) -> None:
    """Refuse constant images and images with >= `DEGENERATE_SATURATION` of pixels at 0 or 1.

    Raises:
        DegenerateImageError: naming the share found and the window used.
    """
    saturated = np.count_nonzero((display <= 0.0) | (display >= 1.0)) / display.size
    _refuse_degenerate(saturated, float(display.min()), float(display.max()), path, voi)


def _refuse_degenerate(saturated: float, low: float, high: float, path: Path, voi: str) -> None:
    if high - low < 1e-6:
        raise _fail(path, f"degenerate image: every pixel is {low:.3g} after windowing ({voi}); "
                          "almost always a window or bit-depth problem in the file (set data.options.skip_degenerate=false to keep it)",
                    DegenerateImageError)
    if saturated >= DEGENERATE_SATURATION:
        raise _fail(path, f"degenerate image: {saturated:.1%} of pixels are saturated (0 or 1) after windowing ({voi}); "
                          f"accepted below {DEGENERATE_SATURATION:.0%}, as this is almost always a window or bit-depth problem "
                          "(set data.options.skip_degenerate=false to keep it)", DegenerateImageError)


class DicomXrayReader:
    """MONAI ``ImageReader``-style wrapper: ``verify_suffix`` then ``read`` -> ``(array, metadata)``."""

    suffixes = (".dcm", ".dicom", ".dc3", "")

    def __init__(self, **options: Any) -> None:
        self.options = options

    def verify_suffix(self, filename: str | Path) -> bool:
        return Path(filename).suffix.lower() in self.suffixes

    def read(self, filename: str | Path) -> XrayImage:
        return read_dicom_xray(filename, **self.options)


def _honour_bits_stored(arr: np.ndarray, bits_stored: int, pixel_representation: int) -> np.ndarray:
    """Mask bits above BitsStored and sign-extend signed data (idempotent on already-correct values)."""
    if arr.dtype.kind not in "iu" or bits_stored >= arr.dtype.itemsize * 8:
        return arr
    mask = (1 << bits_stored) - 1
    if pixel_representation == 0:
        unsigned = arr.view(arr.dtype.str.replace("i", "u")) if arr.dtype.kind == "i" else arr
        return unsigned & unsigned.dtype.type(mask)  # native width: no widening copy
    values = arr.astype(np.int32) & mask
    sign = 1 << (bits_stored - 1)
    return (values ^ sign) - sign


def _apply_modality_lut(arr: np.ndarray, ds: Any, path: Path) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut

    if "ModalityLUTSequence" in ds:
        try:
            return np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)
        except Exception as err:  # a malformed sequence raises TypeError, IndexError, KeyError...  # noqa: BLE001 - third-party pixel code raises any type; wrapped as the reader's error
            raise _fail(path, f"ModalityLUTSequence is malformed ({type(err).__name__}: {err}); accepted: one item with LUTDescriptor (3 values) and LUTData") from None
    try:
        slope = float(ds.get("RescaleSlope", 1) or 1)
        intercept = float(ds.get("RescaleIntercept", 0) or 0)
    except (TypeError, ValueError) as err:
        raise _fail(path, f"RescaleSlope / RescaleIntercept are not numbers ({err})") from None
    values = arr.astype(np.float32)  # float32 is exact for stored values up to 2**24
    if slope != 1.0 or intercept != 0.0:
        values = values * np.float32(slope) + np.float32(intercept)
    return values


def _first(value: Any) -> float:
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0]
    return float(value)


def window_linear(x: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """DICOM VOI window (PS3.3 C.11.2.1.2 / C.11.2.1.3.2) scaled to [0, 1].

    Args:
        x: modality values.
        center, width: WindowCenter and WindowWidth.
        function: VOILUTFunction: LINEAR, LINEAR_EXACT or SIGMOID.

    Returns:
        float64 array in [0, 1].
    """
    function = (function or "LINEAR").upper()
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    if function == "LINEAR_EXACT":
        return np.clip((x - center) / width + 0.5, 0.0, 1.0)
    if width < 1:
        raise ValueError(f"WindowWidth {width} must be >= 1 for VOILUTFunction LINEAR")
    if width == 1:
        return (x >= center - 0.5).astype(np.float64)  # a one-value window is a threshold
    return np.clip((x - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)


def _apply_voi(values: np.ndarray, ds: Any, path: Path) -> tuple[np.ndarray, str]:
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        from pydicom.pixels import apply_voi

        try:
            item = ds.VOILUTSequence[0]
            bits = int(item.LUTDescriptor[2])
            # the LUT is indexed by integers: round the modality LUT output (pydicom warns on floats)
            lut_out = np.asarray(apply_voi(np.rint(values).astype(np.int64), ds, index=0), dtype=np.float64)
        except Exception as err:  # noqa: BLE001 - third-party pixel code raises any type; wrapped as the reader's error
            raise _fail(path, f"VOILUTSequence is malformed ({type(err).__name__}: {err}); accepted: items with LUTDescriptor (3 values) and LUTData") from None
        return np.clip(lut_out / float((1 << bits) - 1), 0.0, 1.0), "VOILUTSequence[0]"
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is not None and width is not None:
        try:
            c, w = _first(center), _first(width)
        except (TypeError, ValueError, IndexError) as err:
            raise _fail(path, f"WindowCenter / WindowWidth are not numbers ({err})") from None
        if w >= 1 or str(ds.get("VOILUTFunction", "LINEAR")).upper() != "LINEAR":
            function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR")
            return window_linear(values, c, w, function), f"window {function} c={c:g} w={w:g}"
    low, high = np.percentile(values, [0.5, 99.5])
    if not math.isfinite(low) or high <= low:
        high = low + 1.0
    return np.clip((values - low) / (high - low), 0.0, 1.0), "percentile 0.5-99.5 (no VOI in file)"


def parse_age(value: Any) -> float | None:
    """DICOM AS ("065Y", "018M", "003W", "010D") -> age in years, or None."""
    match = re.fullmatch(r"\s*(\d{1,3})\s*([DWMY]?)\s*", str(value or ""))
    if not match:
        return None
    number, unit = int(match.group(1)), match.group(2) or "Y"
    return round(number / {"Y": 1, "M": 12, "W": 52.1775, "D": 365.25}[unit], 3)


def normalise_view(view_position: Any) -> str:
    """ViewPosition -> PA / AP / LATERAL / UNKNOWN."""
    view = str(view_position or "").strip().upper()
    if view in _FRONTAL:
        return view
    if view in _LATERAL:
        return "LATERAL"
    return "UNKNOWN"


def _spacing(ds: Any) -> tuple[tuple[float, float] | None, str | None]:
    for keyword in ("ImagerPixelSpacing", "PixelSpacing"):
        value = ds.get(keyword)
        if value is not None and len(value) == 2:
            row, col = float(value[0]), float(value[1])
            if row > 0 and col > 0:  # some exports write 0\0 meaning "unknown"
                return (row, col), keyword
    return None, None


def _metadata(ds: Any, modality: str, photometric: str, frames: int, voi: str) -> XrayMetadata:
    spacing, source = _spacing(ds)
    sex = str(ds.get("PatientSex", "") or "").strip().upper() or None
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    sop = ds.get("SOPClassUID")
    return XrayMetadata(
        modality=modality,
        view_position=str(ds.get("ViewPosition", "") or "") or None,
        view=normalise_view(ds.get("ViewPosition")),
        frontal=normalise_view(ds.get("ViewPosition")) in _FRONTAL,
        sex=sex if sex in ("M", "F", "O") else None,
        age=parse_age(ds.get("PatientAge")),
        pixel_spacing=spacing,
        spacing_source=source,
        photometric=photometric,
        bits_stored=int(ds.get("BitsStored", ds.get("BitsAllocated", 0)) or 0),
        pixel_representation=int(ds.get("PixelRepresentation", 0) or 0),
        transfer_syntax=getattr(syntax, "name", str(syntax) if syntax else None),
        sop_class=getattr(sop, "name", str(sop) if sop else None),
        rows=int(ds.get("Rows", 0)),
        columns=int(ds.get("Columns", 0)),
        frames=frames,
        voi=voi,
        burned_in_annotation=str(ds.get("BurnedInAnnotation", "") or "") or None,
        body_part=str(ds.get("BodyPartExamined", "") or "") or None,
    )
