"""MONAI transforms for radiographs: deterministic preprocessing (cached) and train-only augmentation."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from mmapps_domains.medical.options import MedicalDataOptions


def preprocess_config(options: MedicalDataOptions) -> dict[str, Any]:
    """Everything that changes the deterministic output (the cache key's config part): see `preprocess`."""
    from mmapps_domains.medical.preprocess import preprocess_config as config

    return config(options)


def build_preprocess(options: MedicalDataOptions) -> Callable[[Path], tuple[np.ndarray, dict]]:
    """``path -> (array (1, S, S) float32, metadata)``: decode, resize, pad, z-score (owned by `preprocess`)."""
    from mmapps_domains.medical.preprocess import build_preprocess as build

    return build(options)


class RandomAffine2d:
    """Random rotation / scale / translation of ``(C, H, W)`` arrays with ``torch.grid_sample``.

    MONAI's ``RandAffine`` rebuilds a sampling grid in float64 per call (tens of ms at 128 px);
    this does the same resampling (bilinear, zero padding) in about a millisecond, which keeps
    the cached epochs' data loading fast. Draws from the generator it is given per call (derived
    from (seed, epoch, sample index) by the dataset), or from its own when given none.

    Args:
        prob: probability of applying the transform.
        rotate: max rotation (radians); scale: max relative zoom; translate: max shift (image fraction).
        seed: seed of the transform's own generator (used only when a call passes no `rng`).
    """

    def __init__(self, prob: float = 0.7, rotate: float = 0.08, scale: float = 0.08, translate: float = 0.04, seed: int = 0) -> None:
        self.prob, self.rotate, self.scale, self.translate = prob, rotate, scale, translate
        self.rng = np.random.default_rng(seed)

    def __call__(self, array: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        rng = self.rng if rng is None else rng
        if rng.random() >= self.prob:
            return array
        angle = rng.uniform(-self.rotate, self.rotate)
        zoom = 1.0 + rng.uniform(-self.scale, self.scale)
        tx, ty = rng.uniform(-2 * self.translate, 2 * self.translate, size=2)  # grid units span [-1, 1]
        cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
        theta = torch.tensor([[[cos, -sin, tx], [sin, cos, ty]]], dtype=torch.float32)  # (1, 2, 3)
        x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None]  # (1, C, H, W)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0].numpy()


def build_augment(size: int) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    """Train-only augmentation ``(array (1, S, S), rng) -> array``: random affine, intensity scaling
    (p=0.5, +-10 %) and Gaussian noise (p=0.3, sd 0.05), as MONAI's RandAffine / RandScaleIntensity /
    RandGaussianNoise do, written directly on arrays so that cached epochs stay fast (MONAI's versions
    cost tens of ms per image in MetaTensor bookkeeping at this size).

    Every draw comes from `rng`, which the dataset derives from (seed, epoch, study index, image)
    with `mmapps.data.rng.sample_rng`: the same in any DataLoader worker and after a resume.
    """
    affine = RandomAffine2d()

    def augment(array: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = affine(array, rng)
        if rng.random() < 0.5:
            out = out * np.float32(1.0 + rng.uniform(-0.1, 0.1))
        if rng.random() < 0.3:
            out = out + rng.normal(0.0, 0.05, size=out.shape).astype(np.float32)
        return np.asarray(out, dtype=np.float32)

    return augment
