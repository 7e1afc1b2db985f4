"""MONAI transforms for radiographs: deterministic preprocessing (cached) and train-only augmentation."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from mmapps_domains.medical.options import MedicalDataOptions


def preprocess_config(options: MedicalDataOptions) -> dict[str, Any]:
    """Everything that changes the deterministic output (the cache key's config part)."""
    return {
        "reader": "read_dicom_xray/v1",
        "image_size": options.image_size,
        "multiframe": "first" if options.multiframe == "all" else options.multiframe,
        "allowed_modalities": sorted(options.allowed_modalities),
        "intensity": "NormalizeIntensity(z-score)",
    }


def build_preprocess(options: MedicalDataOptions) -> Callable[[Path], tuple[np.ndarray, dict]]:
    """``path -> (array (1, S, S) float32, metadata)``: decode, resize the longest side to S, pad, z-score.

    The multi-frame policy ``all`` is applied as ``first`` here: one image per DICOM object keeps
    the study's element axis meaningful (documented in docs/medical.md).
    """
    from monai.transforms import Compose, NormalizeIntensity, Resize, SpatialPad

    from mmapps_domains.medical.dicom import read_dicom_xray

    size = options.image_size
    chain = Compose([Resize(spatial_size=size, size_mode="longest", mode="area"), SpatialPad((size, size)), NormalizeIntensity()])
    multiframe = "first" if options.multiframe == "all" else options.multiframe

    def preprocess(path: Path) -> tuple[np.ndarray, dict]:
        array, meta = read_dicom_xray(path, allowed_modalities=options.allowed_modalities, multiframe=multiframe)
        out = chain(array[None])  # (1, S, S)
        return np.asarray(out, dtype=np.float32), dict(meta)

    return preprocess


def build_augment(size: int, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """Random affine, intensity scaling and noise on ``(1, S, S)`` arrays (train split only)."""
    from monai.transforms import Compose, RandAffine, RandGaussianNoise, RandScaleIntensity

    chain = Compose(
        [
            RandAffine(prob=0.7, rotate_range=(0.08,), scale_range=(0.08, 0.08), translate_range=(0.04 * size, 0.04 * size), padding_mode="zeros"),
            RandScaleIntensity(factors=0.1, prob=0.5),
            RandGaussianNoise(prob=0.3, std=0.05),
        ]
    )
    chain.set_random_state(seed=seed)

    def augment(array: np.ndarray) -> np.ndarray:
        return np.asarray(chain(array), dtype=np.float32)

    return augment
