"""Deterministic radiograph preprocessing (what the cache stores): decode -> resize longest side -> pad -> z-score.

``build_preprocess(options)`` returns ``path -> (array (1, S, S) float32, metadata)``, the same
output as MONAI's ``Resize(size_mode="longest", mode="area")`` + ``SpatialPad`` +
``NormalizeIntensity`` on the reader's display-space image (`build_monai_preprocess`, kept as the
reference), computed without MONAI's per-call bookkeeping:

- the reader views native pixel data in place and decodes JPEG-LS with CharLS (`dicom_pixels`),
  applies the grayscale pipeline as one lookup table (`dicom_lut`) and decodes JPEG 2000 at the
  reduced resolution level that keeps >= 2x the target size (`dicom_j2k`);
- the resize is the same area filter (``torch.nn.functional.interpolate(mode="area")``, an exact
  box average, the cheapest filter that does not alias when shrinking 8-15x), to the size MONAI
  computes from the header's Rows x Columns (so a reduced decode gives the same output shape),
  done inside the reader: when the window is a clipped line over the image's values it runs on
  the stored values before the window (`dicom_resize`), so nothing is windowed at full resolution;
- padding is centred as ``SpatialPad`` pads, and the z-score uses the population std, as MONAI.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from mmapps_domains.medical.dicom_resize import resized_shape  # noqa: F401 - part of this module's API
from mmapps_domains.medical.options import MedicalDataOptions, reader_options

PREPROCESS_ID = "read_dicom_xray/v4-resize-before-window"


def preprocess_config(options: MedicalDataOptions) -> dict[str, Any]:
    """Everything that changes the deterministic output (the cache key's config part)."""
    reader = reader_options(options)
    return {
        "reader": PREPROCESS_ID,
        "image_size": options.image_size,
        **{key: sorted(value) if isinstance(value, list) else value for key, value in reader.items()},
        "intensity": "NormalizeIntensity(z-score)",
    }


def pad_normalise(image: np.ndarray, size: int) -> np.ndarray:
    """(h, w) resized display image -> (1, size, size) float32: centre pad with 0 as ``SpatialPad``, z-score as ``NormalizeIntensity``."""
    h, w = image.shape
    out = np.zeros((1, size, size), dtype=np.float32)
    top, left = (size - h) // 2, (size - w) // 2
    out[0, top : top + h, left : left + w] = image
    mean, std = out.mean(dtype=np.float64), out.std(dtype=np.float64)
    out -= np.float32(mean)
    out /= np.float32(std if std != 0.0 else 1.0)
    return out


def build_preprocess(options: MedicalDataOptions) -> Callable[[Path], tuple[np.ndarray, dict]]:
    """``path -> (array (1, S, S) float32, metadata)``: decode (reduced where possible), resize the longest side to S, pad, z-score."""
    from mmapps_domains.medical.dicom import read_dicom_xray

    size = options.image_size
    kwargs = reader_options(options)

    def preprocess(path: Path) -> tuple[np.ndarray, dict]:
        image, meta = read_dicom_xray(path, decode_size=size, resize_to=size, **kwargs)
        return pad_normalise(image, size), dict(meta)

    return preprocess


def build_monai_preprocess(options: MedicalDataOptions) -> Callable[[Path], tuple[np.ndarray, dict]]:
    """The reference: the reader's full-resolution float pipeline + MONAI's Resize / SpatialPad / NormalizeIntensity."""
    from mmapps_domains.medical.dicom import read_dicom_xray
    from monai.transforms import Compose, NormalizeIntensity, Resize, SpatialPad

    size = options.image_size
    chain = Compose([Resize(spatial_size=size, size_mode="longest", mode="area"), SpatialPad((size, size)), NormalizeIntensity()])
    kwargs = reader_options(options)

    def preprocess(path: Path) -> tuple[np.ndarray, dict]:
        array, meta = read_dicom_xray(path, pipeline="reference", **kwargs)
        out = chain(array[None])  # (1, S, S)
        return np.asarray(out, dtype=np.float32), dict(meta)

    return preprocess
