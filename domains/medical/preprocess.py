"""Deterministic radiograph preprocessing (what the cache stores): decode -> resize longest side -> pad -> z-score.

``build_preprocess(options)`` returns ``path -> (array (1, S, S) float32, metadata)``, the same
output as MONAI's ``Resize(size_mode="longest", mode="area")`` + ``SpatialPad`` +
``NormalizeIntensity`` on the reader's display-space image.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from mmapps_domains.medical.options import MedicalDataOptions, reader_options

PREPROCESS_ID = "read_dicom_xray/v2"


def preprocess_config(options: MedicalDataOptions) -> dict[str, Any]:
    """Everything that changes the deterministic output (the cache key's config part)."""
    reader = reader_options(options)
    return {
        "reader": PREPROCESS_ID,
        "image_size": options.image_size,
        **{key: sorted(value) if isinstance(value, list) else value for key, value in reader.items()},
        "intensity": "NormalizeIntensity(z-score)",
    }


def build_preprocess(options: MedicalDataOptions) -> Callable[[Path], tuple[np.ndarray, dict]]:
    """``path -> (array (1, S, S) float32, metadata)``: decode, resize the longest side to S, pad, z-score."""
    from mmapps_domains.medical.dicom import read_dicom_xray
    from monai.transforms import Compose, NormalizeIntensity, Resize, SpatialPad

    size = options.image_size
    chain = Compose([Resize(spatial_size=size, size_mode="longest", mode="area"), SpatialPad((size, size)), NormalizeIntensity()])
    kwargs = reader_options(options)

    def preprocess(path: Path) -> tuple[np.ndarray, dict]:
        array, meta = read_dicom_xray(path, **kwargs)
        out = chain(array[None])  # (1, S, S)
        return np.asarray(out, dtype=np.float32), dict(meta)

    return preprocess
