"""Deterministic radiograph preprocessing (what the cache stores): decode -> resize longest side -> pad -> z-score.

``build_preprocess(options)`` returns ``path -> (array (1, S, S) float32, metadata)``, the same
output as MONAI's ``Resize(size_mode="longest", mode="area")`` + ``SpatialPad`` +
``NormalizeIntensity`` on the reader's display-space image (`build_monai_preprocess`, kept as the
reference), computed without MONAI's per-call bookkeeping:

- the reader applies the grayscale pipeline as one lookup table (`dicom_lut`) and decodes JPEG
  2000 at the reduced resolution level that keeps >= 2x the target size (`dicom_j2k`);
- the resize is the same area filter (``torch.nn.functional.interpolate(mode="area")``, an exact
  box average, the cheapest filter that does not alias when shrinking 8-15x), to the size MONAI
  computes from the header's Rows x Columns (so a reduced decode gives the same output shape);
- padding is centred as ``SpatialPad`` pads, and the z-score uses the population std, as MONAI.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from mmapps_domains.medical.options import MedicalDataOptions, reader_options

PREPROCESS_ID = "read_dicom_xray/v3-lut-j2k-reduce"


def preprocess_config(options: MedicalDataOptions) -> dict[str, Any]:
    """Everything that changes the deterministic output (the cache key's config part)."""
    reader = reader_options(options)
    return {
        "reader": PREPROCESS_ID,
        "image_size": options.image_size,
        **{key: sorted(value) if isinstance(value, list) else value for key, value in reader.items()},
        "intensity": "NormalizeIntensity(z-score)",
    }


def resized_shape(rows: int, columns: int, size: int) -> tuple[int, int]:
    """MONAI ``Resize(size_mode="longest")``'s output shape."""
    scale = size / max(rows, columns)
    return int(round(rows * scale)), int(round(columns * scale))


def resize_pad_normalise(image: np.ndarray, out_shape: tuple[int, int], size: int) -> np.ndarray:
    """(H, W) display image -> (1, size, size) float32: area resize to ``out_shape``, centre pad, z-score."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]  # (1, 1, H, W)
    if tuple(x.shape[-2:]) != out_shape:
        x = F.interpolate(x, size=out_shape, mode="area")
    out = torch.zeros((1, size, size), dtype=torch.float32)
    top, left = (size - out_shape[0]) // 2, (size - out_shape[1]) // 2
    out[0, top : top + out_shape[0], left : left + out_shape[1]] = x[0, 0]
    mean, std = out.mean(), out.std(unbiased=False)
    out = (out - mean) / (std if float(std) != 0.0 else 1.0)
    return out.numpy()


def build_preprocess(options: MedicalDataOptions) -> Callable[[Path], tuple[np.ndarray, dict]]:
    """``path -> (array (1, S, S) float32, metadata)``: decode (reduced where possible), resize the longest side to S, pad, z-score."""
    from mmapps_domains.medical.dicom import read_dicom_xray

    size = options.image_size
    kwargs = reader_options(options)

    def preprocess(path: Path) -> tuple[np.ndarray, dict]:
        image, meta = read_dicom_xray(path, decode_size=size, **kwargs)
        out_shape = resized_shape(meta["rows"] or image.shape[-2], meta["columns"] or image.shape[-1], size)
        return resize_pad_normalise(image, out_shape, size), dict(meta)

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
