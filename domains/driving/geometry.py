"""Frames and boxes, vectorised in torch.

Conventions (those of OpenPCDet):
- LiDAR frame: x forward, y left, z up. A LiDAR box is ``(x, y, z, l, w, h, heading)`` with
  ``(x, y, z)`` its centre and ``heading`` the yaw about +z from +x (N, 7).
- Rectified camera frame: x right, y down, z forward. A camera box (KITTI label) is
  ``(x, y, z, h, w, l, ry)`` with ``(x, y, z)`` the bottom centre and ``ry`` the yaw about +y (N, 7).
- ``heading = -ry - pi/2`` and ``ry = -heading - pi/2``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor


def as_tensor(matrix: np.ndarray | Tensor, like: Tensor) -> Tensor:
    """Return `matrix` as a tensor of `like`'s dtype and device."""
    return torch.as_tensor(matrix, dtype=like.dtype, device=like.device)


def homogeneous(matrix: Tensor) -> Tensor:
    """Pad a (3, 3) or (3, 4) matrix to (4, 4)."""
    out = torch.eye(4, dtype=matrix.dtype, device=matrix.device)
    out[: matrix.shape[0], : matrix.shape[1]] = matrix
    return out


def transform_points(points: Tensor, matrix: Tensor) -> Tensor:
    """Apply a (3, 4) or (4, 4) homogeneous transform to (N, 3) points; returns (N, rows) with rows 3."""
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def velo_to_rect_matrix(r0_rect: Tensor, tr_velo_to_cam: Tensor) -> Tensor:
    """Return the (4, 4) matrix R0_rect · Tr_velo_to_cam."""
    return homogeneous(r0_rect) @ homogeneous(tr_velo_to_cam)


def velo_to_rect(points: Tensor, r0_rect: Tensor, tr_velo_to_cam: Tensor) -> Tensor:
    """LiDAR (N, 3) -> rectified camera (N, 3)."""
    return transform_points(points, velo_to_rect_matrix(r0_rect, tr_velo_to_cam))


def rect_to_velo(points: Tensor, r0_rect: Tensor, tr_velo_to_cam: Tensor) -> Tensor:
    """Rectified camera (N, 3) -> LiDAR (N, 3)."""
    return transform_points(points, torch.linalg.inv(velo_to_rect_matrix(r0_rect, tr_velo_to_cam)))


def project_to_image(points: Tensor, projection: Tensor) -> tuple[Tensor, Tensor]:
    """Project (N, 3) points with a (3, 4) matrix (P2 for rect points, P2·R0·Tr for LiDAR points).

    Returns:
        uv (N, 2) pixel coordinates and depth (N,) (the third homogeneous coordinate).
    """
    uvw = points @ projection[:, :3].T + projection[:, 3]  # (N, 3)
    depth = uvw[:, 2]
    uv = uvw[:, :2] / depth.clamp(min=1e-6).unsqueeze(1)
    return uv, depth


def boxes_camera_to_lidar(boxes: Tensor, r0_rect: Tensor, tr_velo_to_cam: Tensor) -> Tensor:
    """KITTI camera boxes (N, 7: x, y, z, h, w, l, ry) -> LiDAR boxes (N, 7: x, y, z, l, w, h, heading)."""
    xyz = rect_to_velo(boxes[:, :3], r0_rect, tr_velo_to_cam)
    h, w, l, ry = boxes[:, 3], boxes[:, 4], boxes[:, 5], boxes[:, 6]
    xyz = torch.stack([xyz[:, 0], xyz[:, 1], xyz[:, 2] + h / 2], dim=1)
    return torch.cat([xyz, torch.stack([l, w, h, wrap_angle(-ry - math.pi / 2)], dim=1)], dim=1)


def boxes_lidar_to_camera(boxes: Tensor, r0_rect: Tensor, tr_velo_to_cam: Tensor) -> Tensor:
    """LiDAR boxes (N, 7) -> KITTI camera boxes (N, 7: x, y, z, h, w, l, ry)."""
    l, w, h, heading = boxes[:, 3], boxes[:, 4], boxes[:, 5], boxes[:, 6]
    bottom = torch.stack([boxes[:, 0], boxes[:, 1], boxes[:, 2] - h / 2], dim=1)
    xyz = velo_to_rect(bottom, r0_rect, tr_velo_to_cam)
    return torch.cat([xyz, torch.stack([h, w, l, wrap_angle(-heading - math.pi / 2)], dim=1)], dim=1)


def wrap_angle(angle: Tensor) -> Tensor:
    """Wrap angles to [-pi, pi)."""
    return torch.remainder(angle + math.pi, 2 * math.pi) - math.pi


def box_corners_lidar(boxes: Tensor) -> Tensor:
    """Corners of LiDAR boxes (N, 7) -> (N, 8, 3): bottom face then top face, counter-clockwise from above."""
    signs = boxes.new_tensor([[1, 1, -1], [-1, 1, -1], [-1, -1, -1], [1, -1, -1],
                              [1, 1, 1], [-1, 1, 1], [-1, -1, 1], [1, -1, 1]]) / 2  # (8, 3)
    local = signs.unsqueeze(0) * boxes[:, None, 3:6]  # (N, 8, 3)
    cos, sin = torch.cos(boxes[:, 6]), torch.sin(boxes[:, 6])
    x = local[..., 0] * cos[:, None] - local[..., 1] * sin[:, None]
    y = local[..., 0] * sin[:, None] + local[..., 1] * cos[:, None]
    return torch.stack([x, y, local[..., 2]], dim=-1) + boxes[:, None, :3]


def box_corners_camera(boxes: Tensor) -> Tensor:
    """Corners of KITTI camera boxes (N, 7: x, y, z, h, w, l, ry) -> (N, 8, 3); bottom face (y = y0) first."""
    h, w, l, ry = boxes[:, 3:4], boxes[:, 4:5], boxes[:, 5:6], boxes[:, 6:7]
    sx = boxes.new_tensor([1, 1, -1, -1, 1, 1, -1, -1]) / 2
    sz = boxes.new_tensor([1, -1, -1, 1, 1, -1, -1, 1]) / 2
    sy = boxes.new_tensor([0, 0, 0, 0, -1, -1, -1, -1])
    x, y, z = l * sx, h * sy, w * sz  # (N, 8) each
    cos, sin = torch.cos(ry), torch.sin(ry)
    xr = x * cos + z * sin
    zr = -x * sin + z * cos
    return torch.stack([xr, y, zr], dim=-1) + boxes[:, None, :3]


def bev_corners(boxes: Tensor) -> Tensor:
    """BEV rectangles of LiDAR boxes (N, 7) -> (N, 4, 2) counter-clockwise."""
    return box_corners_lidar(boxes)[:, :4, :2]


def points_in_boxes(points: Tensor, boxes: Tensor) -> Tensor:
    """Which points lie inside which LiDAR boxes (boundary included).

    Args:
        points: (N, >=3) LiDAR points.
        boxes: (M, 7) LiDAR boxes.

    Returns:
        (N, M) bool.
    """
    offset = points[:, None, :3] - boxes[None, :, :3]  # (N, M, 3)
    cos, sin = torch.cos(boxes[:, 6]), torch.sin(boxes[:, 6])
    local_x = offset[..., 0] * cos + offset[..., 1] * sin
    local_y = -offset[..., 0] * sin + offset[..., 1] * cos
    half = boxes[None, :, 3:6] / 2 + 1e-6
    return (local_x.abs() <= half[..., 0]) & (local_y.abs() <= half[..., 1]) & (offset[..., 2].abs() <= half[..., 2])


def range_mask(points: Tensor, point_range: tuple[float, float, float, float, float, float]) -> Tensor:
    """(N,) bool: points within ``[x_min, y_min, z_min, x_max, y_max, z_max)``."""
    lo = points.new_tensor(point_range[:3])
    hi = points.new_tensor(point_range[3:])
    return ((points[:, :3] >= lo) & (points[:, :3] < hi)).all(dim=1)


def fov_mask(points: Tensor, velo_to_image: Tensor, image_size: tuple[int, int]) -> Tensor:
    """(N,) bool: LiDAR points in front of the camera that project inside the (height, width) image."""
    uv, depth = project_to_image(points[:, :3], velo_to_image)
    h, w = image_size
    return (depth > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)


def boxes_to_image_boxes(boxes_camera: Tensor, p2: Tensor, image_size: tuple[int, int] | None = None) -> Tensor:
    """2D boxes (N, 4: left, top, right, bottom) of KITTI camera boxes projected with P2.

    Corners behind the camera are pushed to 0.1 m depth; boxes are clipped to the image when
    `image_size` (height, width) is given.
    """
    corners = box_corners_camera(boxes_camera)  # (N, 8, 3)
    corners = torch.cat([corners[..., :2], corners[..., 2:].clamp(min=0.1)], dim=-1)
    uv, _ = project_to_image(corners.reshape(-1, 3), p2)
    uv = uv.reshape(-1, 8, 2)
    box = torch.cat([uv.min(dim=1).values, uv.max(dim=1).values], dim=1)  # (N, 4)
    if image_size is not None:
        h, w = image_size
        box = torch.stack([box[:, 0].clamp(0, w - 1), box[:, 1].clamp(0, h - 1), box[:, 2].clamp(0, w - 1), box[:, 3].clamp(0, h - 1)], dim=1)
    return box


def observation_angle(boxes_camera: Tensor) -> Tensor:
    """KITTI alpha of camera boxes: ``ry - atan2(x, z)`` wrapped to [-pi, pi)."""
    return wrap_angle(boxes_camera[:, 6] - torch.atan2(boxes_camera[:, 0], boxes_camera[:, 2]))
