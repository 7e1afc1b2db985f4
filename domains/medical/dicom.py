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

Rejected with a reason (`DicomReadError`): not DICOM, truncated or corrupt, no pixel data,
non-image objects (structured reports, RT objects, presentation states, DICOMDIR), a modality
outside ``allowed_modalities`` (default CR and DX), colour images unless ``allow_color``, and
transfer syntaxes no installed decoder handles.

Patient identifiers never enter the returned metadata: only the fields in `XrayMetadata`.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal, NamedTuple, Sequence

import numpy as np

MultiframePolicy = Literal["first", "all", "reject"]

# SOP classes that are never radiographs (PS3.4 B.5): reports, RT, presentation states, file sets.
_NON_IMAGE_SOP_PREFIXES = {
    "1.2.840.10008.5.1.4.1.1.88.": "a structured report (SR)",
    "1.2.840.10008.5.1.4.1.1.481.": "a radiotherapy (RT) object",
    "1.2.840.10008.5.1.4.1.1.11.": "a presentation state",
    "1.2.840.10008.1.3.10": "a DICOMDIR (media file-set directory)",
    "1.2.840.10008.5.1.4.1.1.104.": "an encapsulated document (PDF/CDA)",
    "1.2.840.10008.5.1.4.1.1.66": "a raw data / registration / segmentation object",
    "1.2.840.10008.5.1.4.1.1.9.": "a waveform (ECG/audio)",
}
_NON_IMAGE_MODALITIES = {"SR", "RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD", "PR", "KO", "DOC", "ECG", "REG", "SEG"}
_FRONTAL = {"PA", "AP"}
_LATERAL = {"LL", "RL", "LATERAL", "LAT", "LLD", "RLD"}


class DicomReadError(ValueError):
    """A DICOM file that cannot be used, with the file, the field and the reason."""


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


def _fail(path: Path | str, reason: str) -> DicomReadError:
    return DicomReadError(f"{path}: {reason}")


def read_dicom_xray(
    path: str | Path,
    *,
    allowed_modalities: Sequence[str] | None = ("CR", "DX"),
    multiframe: MultiframePolicy = "first",
    allow_color: bool = False,
) -> XrayImage:
    """Read one radiograph into display space.

    Args:
        path: DICOM file.
        allowed_modalities: accepted ``Modality`` values; None accepts any image modality.
        multiframe: policy for multi-frame objects (see the module docstring).
        allow_color: convert RGB / YBR images to luminance (BT.601) instead of rejecting them.

    Returns:
        `XrayImage` with a float32 array in [0, 1] (1 = bright) and `XrayMetadata`.

    Raises:
        DicomReadError: for any file that cannot be used (the message names the file and the reason).
        FileNotFoundError: when the path does not exist.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: DICOM file not found")
    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError as err:
        raise _fail(path, f"not a DICOM file (no 'DICM' preamble / unreadable header: {err})") from None
    except Exception as err:  # truncated headers raise EOFError, struct.error, OSError...
        raise _fail(path, f"corrupt or truncated DICOM header ({type(err).__name__}: {err})") from None
    _check_is_radiograph(ds, path, allowed_modalities)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1 and multiframe == "reject":
        raise _fail(path, f"NumberOfFrames is {frames}; multi-frame objects are rejected (multiframe='reject'); accepted: 1 frame, or set multiframe to 'first' or 'all'")
    stored = _decode_pixels(ds, path)
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        if not allow_color:
            raise _fail(path, f"PhotometricInterpretation is {photometric!r}; chest radiographs must be MONOCHROME1 or MONOCHROME2 (set allow_color to convert colour images)")
        stored = _to_luminance(stored, frames)
        photometric = "MONOCHROME2"
    else:
        stored = _honour_bits_stored(stored, int(ds.get("BitsStored", ds.BitsAllocated)), int(ds.get("PixelRepresentation", 0)))
    if frames > 1 and multiframe == "first":
        stored = stored[0]
    values = _apply_modality_lut(stored, ds)
    display, voi = _apply_voi(values, ds)
    if photometric == "MONOCHROME1":
        display = 1.0 - display
    return XrayImage(np.ascontiguousarray(display, dtype=np.float32), _metadata(ds, photometric, frames, voi))


class DicomXrayReader:
    """MONAI ``ImageReader``-style wrapper: ``verify_suffix`` then ``read`` -> ``(array, metadata)``."""

    suffixes = (".dcm", ".dicom", ".dc3", "")

    def __init__(self, **options: Any) -> None:
        self.options = options

    def verify_suffix(self, filename: str | Path) -> bool:
        return Path(filename).suffix.lower() in self.suffixes

    def read(self, filename: str | Path) -> XrayImage:
        return read_dicom_xray(filename, **self.options)


def _check_is_radiograph(ds: Any, path: Path, allowed_modalities: Sequence[str] | None) -> None:
    sop = str(ds.get("SOPClassUID", "") or ds.get("file_meta", {}).get("MediaStorageSOPClassUID", ""))
    for prefix, what in _NON_IMAGE_SOP_PREFIXES.items():
        if sop.startswith(prefix):
            raise _fail(path, f"SOPClassUID {sop} is {what}, not an image; accepted: CR / DX image storage")
    if "DirectoryRecordSequence" in ds:
        raise _fail(path, "the file is a DICOMDIR (DirectoryRecordSequence present), not an image")
    modality = str(ds.get("Modality", "")).upper()
    if modality in _NON_IMAGE_MODALITIES:
        raise _fail(path, f"Modality is {modality!r}, a non-image object; accepted: {', '.join(allowed_modalities or ['any image'])}")
    if allowed_modalities is not None and modality not in {m.upper() for m in allowed_modalities}:
        raise _fail(path, f"Modality is {modality!r}; accepted modalities: {', '.join(allowed_modalities)}")
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise _fail(path, "no PixelData element (7FE0,0010): the object holds no image")


def _decode_pixels(ds: Any, path: Path) -> np.ndarray:
    syntax = ds.file_meta.get("TransferSyntaxUID", None) if hasattr(ds, "file_meta") else None
    try:
        return np.asarray(ds.pixel_array)
    except NotImplementedError as err:
        name = getattr(syntax, "name", syntax)
        raise _fail(path, f"transfer syntax {name} ({syntax}) cannot be decoded by the installed plugins ({err}); install pylibjpeg, pylibjpeg-libjpeg, pylibjpeg-openjpeg, pyjpegls") from None
    except Exception as err:
        raise _fail(path, f"pixel data could not be decoded (truncated or corrupt; transfer syntax {getattr(syntax, 'name', syntax)}): {type(err).__name__}: {err}") from None


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


def _to_luminance(arr: np.ndarray, frames: int) -> np.ndarray:
    if arr.ndim == (4 if frames > 1 else 3) and arr.shape[-1] == 3:
        return arr[..., 0] * 0.299 + arr[..., 1] * 0.587 + arr[..., 2] * 0.114
    return arr


def _apply_modality_lut(arr: np.ndarray, ds: Any) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut

    if "ModalityLUTSequence" in ds:
        return np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
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


def _apply_voi(values: np.ndarray, ds: Any) -> tuple[np.ndarray, str]:
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        from pydicom.pixels import apply_voi

        item = ds.VOILUTSequence[0]
        bits = int(item.LUTDescriptor[2])
        # the LUT is indexed by integers: round the modality LUT output (pydicom warns on floats)
        lut_out = np.asarray(apply_voi(np.rint(values).astype(np.int64), ds, index=0), dtype=np.float64)
        return np.clip(lut_out / float((1 << bits) - 1), 0.0, 1.0), "VOILUTSequence[0]"
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is not None and width is not None:
        c, w = _first(center), _first(width)
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


def _metadata(ds: Any, photometric: str, frames: int, voi: str) -> XrayMetadata:
    spacing, source = _spacing(ds)
    sex = str(ds.get("PatientSex", "") or "").strip().upper() or None
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    sop = ds.get("SOPClassUID")
    return XrayMetadata(
        modality=str(ds.get("Modality", "")),
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
