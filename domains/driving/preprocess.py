"""Point-cloud preprocessing in torch, vectorised: cropping, global augmentation, pillarisation.

Augmentation returns the 4x4 matrix it applied so that the camera projection can undo it: a
point of the augmented cloud projects into the (unaugmented) image through
``velo_to_image @ inverse(matrix)``; points, boxes and projection therefore stay consistent.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from mmapps_domains.driving.geometry import fov_mask, range_mask, wrap_angle


def crop_points(points: Tensor, point_range: tuple[float, ...], velo_to_image: Tensor | None = None,
                image_size: tuple[int, int] | None = None) -> Tensor:
    """Keep points inside `point_range` and, when a projection and image size are given, inside the image."""
    keep = range_mask(points, point_range)
    if velo_to_image is not None and image_size is not None:
        keep &= fov_mask(points, velo_to_image.to(points.dtype), image_size)
    return points[keep]


def augmentation_matrix(flip: bool, rotation: float, scale: float) -> Tensor:
    """The 4x4 transform: mirror y (optional), then rotate about z by `rotation`, then scale."""
    m = torch.eye(4, dtype=torch.float64)
    if flip:
        m[1, 1] = -1.0
    c, s = math.cos(rotation), math.sin(rotation)
    rot = torch.tensor([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.float64)
    return torch.diag(torch.tensor([scale, scale, scale, 1.0], dtype=torch.float64)) @ rot @ m


def apply_augmentation(points: Tensor, boxes: Tensor, flip: bool, rotation: float, scale: float) -> tuple[Tensor, Tensor, Tensor]:
    """Transform points (N, >=3) and LiDAR boxes (M, 7) together.

    Returns:
        points, boxes and the 4x4 float64 matrix applied (original -> augmented frame).
    """
    matrix = augmentation_matrix(flip, rotation, scale)
    m = matrix.to(points.dtype)
    points = points.clone()
    points[:, :3] = points[:, :3] @ m[:3, :3].T
    boxes = boxes.clone()
    if boxes.shape[0]:
        boxes[:, :3] = boxes[:, :3] @ m[:3, :3].to(boxes.dtype).T
        boxes[:, 3:6] = boxes[:, 3:6] * scale
        heading = -boxes[:, 6] if flip else boxes[:, 6]
        boxes[:, 6] = wrap_angle(heading + rotation)
    return points, boxes, matrix


class Pillars(NamedTuple):
    """Pillarised points of a batch.

    Attributes:
        features: (P, 9) per point: x, y, z, intensity, offsets to the pillar's point mean (3) and centre (2).
        pillar_of_point: (P,) index of the point's pillar in `coords`.
        coords: (Q, 3) int64 batch index, row (y cell), column (x cell) of each non-empty pillar.
        point_index: (P,) row of each kept point in the input (points outside the grid are dropped).
    """

    features: Tensor
    pillar_of_point: Tensor
    coords: Tensor
    point_index: Tensor


def grid_shape(point_range: tuple[float, ...], pillar_size: float) -> tuple[int, int]:
    """(rows ny, columns nx) of the BEV grid."""
    nx = int(round((point_range[3] - point_range[0]) / pillar_size))
    ny = int(round((point_range[4] - point_range[1]) / pillar_size))
    return ny, nx


def pillarise(points: Tensor, batch_index: Tensor, point_range: tuple[float, ...], pillar_size: float) -> Pillars:
    """Group points into vertical pillars without any loop over points or pillars.

    Args:
        points: (P, 4) x, y, z, intensity (further columns are ignored).
        batch_index: (P,) sample of each point.
        point_range: x_min, y_min, z_min, x_max, y_max, z_max.
        pillar_size: pillar edge (m).

    Returns:
        `Pillars`.
    """
    ny, nx = grid_shape(point_range, pillar_size)
    ix = torch.floor((points[:, 0] - point_range[0]) / pillar_size).long()
    iy = torch.floor((points[:, 1] - point_range[1]) / pillar_size).long()
    keep = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny) & (points[:, 2] >= point_range[2]) & (points[:, 2] < point_range[5])
    point_index = torch.nonzero(keep).squeeze(1)
    pts, ix, iy, b = points[point_index, :4], ix[point_index], iy[point_index], batch_index[point_index].long()
    key = (b * ny + iy) * nx + ix
    cells = (int(b.max()) + 1 if b.numel() else 1) * ny * nx
    if cells <= 50_000_000:  # dense occupancy + cumsum: the sorted unique keys without sorting
        occupied = torch.zeros(cells, dtype=torch.bool, device=pts.device)
        occupied[key] = True
        unique_keys = torch.nonzero(occupied).squeeze(1)
        inverse = (torch.cumsum(occupied, 0) - 1)[key]
    else:
        unique_keys, inverse = torch.unique(key, return_inverse=True)
    count = torch.bincount(inverse, minlength=unique_keys.numel()).clamp(min=1).to(pts.dtype)
    mean = torch.zeros(unique_keys.numel(), 3, dtype=pts.dtype, device=pts.device).index_add_(0, inverse, pts[:, :3]) / count[:, None]
    centre_x = (ix.to(pts.dtype) + 0.5) * pillar_size + point_range[0]
    centre_y = (iy.to(pts.dtype) + 0.5) * pillar_size + point_range[1]
    features = torch.cat([pts, pts[:, :3] - mean[inverse], (pts[:, 0] - centre_x)[:, None], (pts[:, 1] - centre_y)[:, None]], dim=1)  # (P, 9)
    coords = torch.stack([unique_keys // (ny * nx), (unique_keys // nx) % ny, unique_keys % nx], dim=1)  # (Q, 3)
    return Pillars(features, inverse, coords, point_index)
