"""Stored pixel values out of a data set: native data as a zero-copy view, compressed data by the fastest decoder.

- Native little-endian data with one sample, 8 or 16 bits allocated, is viewed in place with
  ``np.frombuffer`` on the ``PixelData`` bytes (first frame when asked): pydicom's decoder would
  copy the buffer and mask the unused bits in two more full-resolution passes, which the lookup
  table (`mmapps_domains.medical.dicom_lut`) does anyway. Anything else (big endian, 32 bits,
  several samples, a buffer of the wrong length) goes through pydicom.
- JPEG-LS is decoded with pyjpegls (CharLS) when it is installed: pydicom's default plugin order
  tries pylibjpeg-libjpeg first, which is about 3x slower on JPEG-LS; both are conformant
  decoders (lossless data decodes to the same values). A CharLS failure falls back to the default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from mmapps_domains.medical.dicom_open import fail

_JPEG_LS_SYNTAXES = {"1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"}
_NATIVE_LITTLE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99"}


def native_frame(ds: Any, index: int | None) -> np.ndarray | None:
    """A read-only view of the stored values of frame ``index`` (None: a single-frame object), or None.

    None means "use pydicom": not native little endian, more than one sample, BitsAllocated other
    than 8 / 16, several frames asked for, or a PixelData length that does not match the header.
    """
    if str(ds.file_meta.get("TransferSyntaxUID", "")) not in _NATIVE_LITTLE or "PixelData" not in ds:
        return None
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        allocated, samples = int(ds.BitsAllocated), int(ds.get("SamplesPerPixel", 1) or 1)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    except (TypeError, ValueError, AttributeError):
        return None
    if samples != 1 or allocated not in (8, 16) or (frames > 1 and index is None) or rows <= 0 or columns <= 0:
        return None
    data = ds.PixelData
    frame_bytes = rows * columns * allocated // 8
    if not isinstance(data, (bytes, bytearray)) or len(data) < frame_bytes * frames or len(data) > frame_bytes * frames + 1:
        return None  # odd length is padded by one byte; anything else is left to pydicom's checks
    dtype = np.dtype(("<i" if signed else "<u") + str(allocated // 8))
    start = (index or 0) * frame_bytes
    return np.frombuffer(data, dtype=dtype, count=rows * columns, offset=start).reshape(rows, columns)


def decode_pixels(ds: Any, path: Path, index: int | None = None) -> tuple[np.ndarray, str]:
    """Decode the pixel data (frame ``index`` only, or every frame) -> (array, photometric of the array).

    The photometric interpretation returned is the decoder's (pydicom converts YBR JPEG to RGB
    while the header still says YBR). Every failure is a `DicomReadError` naming the transfer syntax.
    """
    from pydicom.pixels import get_decoder

    syntax = ds.file_meta.get("TransferSyntaxUID")
    name = f"{getattr(syntax, 'name', syntax)} ({syntax})"
    try:
        decoder = get_decoder(syntax)
    except Exception:  # noqa: BLE001 - third-party pixel code raises any type; wrapped as the reader's error
        raise fail(path, f"transfer syntax {name} is not one pydicom can decode; accepted: native, deflate, RLE, JPEG, JPEG-LS, JPEG 2000") from None
    if not decoder.is_available:
        raise fail(path, f"transfer syntax {name} cannot be decoded by the installed plugins; install pylibjpeg, pylibjpeg-libjpeg, pylibjpeg-openjpeg, pyjpegls")
    arr = meta = None
    if str(syntax) in _JPEG_LS_SYNTAXES and "pyjpegls" in decoder.available_plugins:
        try:
            arr, meta = decoder.as_array(ds, index=index, decoding_plugin="pyjpegls")
        except Exception:  # noqa: BLE001 - CharLS refused it: the default plugin decides (and reports)
            arr = None
    if arr is None:
        try:
            arr, meta = decoder.as_array(ds, index=index)
        except Exception as err:  # noqa: BLE001 - third-party pixel code raises any type; wrapped as the reader's error
            raise fail(path, f"pixel data could not be decoded (truncated, corrupt, or not encoded as the transfer syntax {name} claims): {type(err).__name__}: {err}") from None
    photometric = str(meta.get("photometric_interpretation") or ds.get("PhotometricInterpretation", "")).strip().upper()
    return np.asarray(arr), photometric
