"""Cropping, augmentation consistency and pillarisation against a NumPy reference."""

import math

import numpy as np
import torch

from mmapps_domains.driving.geometry import points_in_boxes, project_to_image
from mmapps_domains.driving.preprocess import apply_augmentation, crop_points, grid_shape, pillarise

TR = torch.tensor([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0]], dtype=torch.float64)
P2 = torch.tensor([[100, 0, 50, 0], [0, 100, 40, 0], [0, 0, 1, 0]], dtype=torch.float64)
VELO_TO_IMAGE = P2 @ torch.cat([TR, torch.tensor([[0, 0, 0, 1.0]], dtype=torch.float64)])


def cloud(n=400, seed=0):
    rng = np.random.default_rng(seed)
    return torch.tensor(np.concatenate([rng.uniform([-5, -10, -2], [30, 10, 1], (n, 3)), rng.uniform(0, 1, (n, 1))], 1), dtype=torch.float32)


def test_crop_range_and_fov():
    pts = cloud()
    kept = crop_points(pts, (0, -5, -3, 20, 5, 1), VELO_TO_IMAGE, (80, 100))
    assert len(kept) > 0
    assert (kept[:, 0] >= 0).all() and (kept[:, 0] < 20).all() and (kept[:, 1].abs() <= 5).all()
    uv, depth = project_to_image(kept[:, :3].double(), VELO_TO_IMAGE)
    assert (uv[:, 0] >= 0).all() and (uv[:, 0] < 100).all() and (depth > 0).all()


def test_augmentation_keeps_points_in_boxes_and_projection():
    pts = cloud(seed=1)
    boxes = torch.tensor([[10.0, 2.0, -0.5, 4.0, 2.0, 1.5, 0.4], [20.0, -3.0, 0.0, 1.0, 0.6, 1.7, -1.0]], dtype=torch.float32)
    before = points_in_boxes(pts, boxes)
    for flip in (False, True):
        aug_pts, aug_boxes, matrix = apply_augmentation(pts, boxes, flip, rotation=0.3, scale=1.05)
        assert torch.equal(points_in_boxes(aug_pts, aug_boxes), before)
        # projecting augmented points through the inverse transform lands where the originals do
        uv_aug, _ = project_to_image(aug_pts[:, :3].double(), VELO_TO_IMAGE @ torch.linalg.inv(matrix))
        uv, _ = project_to_image(pts[:, :3].double(), VELO_TO_IMAGE)
        torch.testing.assert_close(uv_aug, uv, atol=1e-3, rtol=1e-4)
    assert math.isclose(aug_boxes[0, 3].item(), 4.2, rel_tol=1e-6)


def pillarise_numpy(points: np.ndarray, batch: np.ndarray, pr, size: float):
    """Reference: the same pillarisation with NumPy (unique keys, bincount means)."""
    ny, nx = grid_shape(pr, size)
    ix = np.floor((points[:, 0] - pr[0]) / size).astype(np.int64)
    iy = np.floor((points[:, 1] - pr[1]) / size).astype(np.int64)
    keep = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny) & (points[:, 2] >= pr[2]) & (points[:, 2] < pr[5])
    key = (batch[keep] * ny + iy[keep]) * nx + ix[keep]
    uniq, inv = np.unique(key, return_inverse=True)
    mean = np.stack([np.bincount(inv, weights=points[keep, d], minlength=len(uniq)) for d in range(3)], 1) / np.bincount(inv)[:, None]
    return uniq, inv, points[keep, :3] - mean[inv]


def test_pillarise_matches_numpy_reference():
    pts = cloud(600, seed=2)
    batch = torch.tensor(np.repeat([0, 1], 300))
    pr, size = (0.0, -8.0, -3.0, 25.6, 8.0, 1.0), 0.8
    out = pillarise(pts, batch, pr, size)
    uniq, inv, offsets = pillarise_numpy(pts.numpy().astype(np.float64), batch.numpy(), pr, size)
    ny, nx = grid_shape(pr, size)
    keys = (out.coords[:, 0] * ny + out.coords[:, 1]) * nx + out.coords[:, 2]
    np.testing.assert_array_equal(keys.numpy(), uniq)
    np.testing.assert_array_equal(out.pillar_of_point.numpy(), inv)
    np.testing.assert_allclose(out.features[:, 4:7].numpy(), offsets, atol=1e-5)
    assert out.features.shape[1] == 9
    assert (out.features[:, 7:9].abs() <= size / 2 + 1e-5).all()
