"""Area resize of a radiograph, and resize *before* the window when the window is a clipped straight line.

The area filter is an exact box average (``torch.nn.functional.interpolate(mode="area")``, what
MONAI's ``Resize(mode="area")`` calls), linear in its input. So when the file's lookup table is
``clip(slope * index + intercept, 0, 1)`` over the values present (`dicom_lut.clip_affine`), the
stored values are clipped where the line leaves [0, 1] (nothing to do when the window does not
clip inside the image's range), box-averaged, and only then mapped by the line: the same numbers
as windowing at full resolution and resizing (to float32 rounding), without the full-resolution
gather. Other tables (SIGMOID, a curved VOI LUT) are applied at full resolution first.
"""

from __future__ import annotations

import numpy as np
from mmapps_domains.medical.dicom_lut import ClipAffine


def resized_shape(rows: int, columns: int, size: int) -> tuple[int, int]:
    """MONAI ``Resize(spatial_size=size, size_mode="longest")``'s output shape."""
    scale = size / max(rows, columns)
    return round(rows * scale), round(columns * scale)


def area_resize(image: np.ndarray, out_shape: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` or ``(F, H, W)`` -> the same with the last two axes box-averaged to ``out_shape`` (float32)."""
    import torch
    import torch.nn.functional as F

    if tuple(image.shape[-2:]) == tuple(out_shape):
        return np.asarray(image, dtype=np.float32)
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    x = x.reshape(-1, 1, *x.shape[-2:])  # (F, 1, H, W)
    out = F.interpolate(x, size=tuple(out_shape), mode="area")
    return out.reshape(*image.shape[:-2], *out_shape).numpy()


def resize_then_window(index: np.ndarray, span: tuple[int, int], line: ClipAffine, out_shape: tuple[int, int]) -> np.ndarray:
    """Display image at ``out_shape`` from full-resolution table indices and the clipped line the table is.

    Args:
        index: ``(H, W)`` table indices (stored values + offset), any integer dtype.
        span: the lowest and highest index present.
        line: the table as a clipped line (`dicom_lut.clip_affine`).
        out_shape: the area resize target.

    Returns:
        float32 ``out_shape`` array in [0, 1].
    """
    x = index.astype(np.float32)
    low, high = span
    if low < line.low or high > line.high:  # the window clips inside the image's range
        np.clip(x, np.float32(line.low), np.float32(line.high), out=x)
    small = area_resize(x, out_shape).astype(np.float64)
    return np.clip(line.slope * small + line.intercept, 0.0, 1.0).astype(np.float32)
