"""Colour DICOM (with ``allow_color``) -> luminance in [0, 1]: RGB, YBR_* and PALETTE COLOR.

pydicom's decoders already return RGB for YBR JPEG (and native YBR_FULL) while the header still
says YBR, and say so in the decoder's metadata; so the colour space is taken from what the decoder
returned, never from the header, and pydicom's ``convert_color_space`` runs only where the array
really is still YBR. PALETTE COLOR indices go through ``apply_color_lut`` (the palette's own bit
depth sets the scale). Colour images skip the modality LUT and VOI: their values are display values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from mmapps_domains.medical.dicom_open import fail

_BT601 = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def color_to_luminance(arr: np.ndarray, photometric: str, ds: Any, path: Path) -> np.ndarray:
    """BT.601 luminance of a decoded colour image, float32 in [0, 1].

    Args:
        arr: decoded pixels ``(..., H, W, 3)``, or palette indices ``(..., H, W)``.
        photometric: the colour space the *decoder* returned (not the header's claim).
        ds: the dataset (palette LUTs, BitsStored).
        path: for errors.

    Raises:
        DicomReadError: a palette or colour conversion pydicom cannot apply.
    """
    from pydicom.pixels import apply_color_lut, convert_color_space

    if photometric == "PALETTE COLOR":
        try:
            rgb = apply_color_lut(arr, ds)
            bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        except Exception as err:  # noqa: BLE001 - third-party pixel code raises any type; wrapped as the reader's error
            raise fail(path, f"PALETTE COLOR lookup tables could not be applied ({type(err).__name__}: {err})") from None
        scale = float((1 << (16 if bits not in (8, 16) else bits)) - 1)
        return np.clip(rgb.astype(np.float32) @ _BT601 / np.float32(scale), 0.0, 1.0)
    if arr.shape[-1] != 3:
        raise fail(path, f"PhotometricInterpretation {photometric!r} with pixel array shape {arr.shape}; expected 3 samples per pixel")
    if photometric.startswith("YBR_FULL"):
        try:
            arr = convert_color_space(arr, photometric, "RGB")
        except Exception as err:  # noqa: BLE001 - third-party pixel code raises any type; wrapped as the reader's error
            raise fail(path, f"{photometric} to RGB conversion failed ({type(err).__name__}: {err})") from None
    elif photometric not in ("RGB", "YBR_ICT", "YBR_RCT"):  # J2K decoders undo ICT / RCT themselves
        raise fail(path, f"PhotometricInterpretation {photometric!r} is not supported; accepted colour: RGB, YBR_FULL(_422), PALETTE COLOR")
    bits = int(ds.get("BitsStored", 8) or 8)
    return np.clip(arr.astype(np.float32) @ _BT601 / np.float32((1 << bits) - 1), 0.0, 1.0)
