"""Exact rotated-box IoU (BEV and 3D) by convex polygon intersection, and rotated NMS in BEV.

The intersection of two convex polygons is the convex hull of (vertices of each inside the other)
and (pairwise edge crossings). All candidates are computed at once for every pair, the valid ones
are ordered by angle about their mean, and the shoelace formula gives the area: no Python loop
over boxes. torchvision has no rotated IoU or NMS; this is the reference used by the evaluation
and by the detector's post-processing.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mmapps_domains.driving.geometry import bev_corners, box_corners_camera


def polygon_area(poly: Tensor) -> Tensor:
    """Area of simple polygons (..., V, 2) by the shoelace formula."""
    x, y = poly[..., 0], poly[..., 1]
    return 0.5 * (x * y.roll(-1, dims=-1) - x.roll(-1, dims=-1) * y).sum(-1).abs()


def _inside_convex(points: Tensor, poly: Tensor, eps: float) -> Tensor:
    """(K, P) bool: points (K, P, 2) inside convex polygons (K, V, 2) of either orientation, boundary included."""
    edge = poly.roll(-1, dims=1) - poly  # (K, V, 2)
    rel = points[:, :, None, :] - poly[:, None, :, :]  # (K, P, V, 2)
    cross = edge[:, None, :, 0] * rel[..., 1] - edge[:, None, :, 1] * rel[..., 0]  # (K, P, V)
    return (cross >= -eps).all(-1) | (cross <= eps).all(-1)


def convex_intersection_area(poly_a: Tensor, poly_b: Tensor, eps: float = 1e-9) -> Tensor:
    """Intersection areas of paired convex polygons.

    Args:
        poly_a, poly_b: (K, V, 2) convex polygons (any orientation), paired row by row.

    Returns:
        (K,) intersection areas.
    """
    k, v = poly_a.shape[:2]
    if k == 0:
        return poly_a.new_zeros(0)
    p1, p2 = poly_a, poly_a.roll(-1, dims=1)  # edges of a: p1 -> p2, (K, V, 2)
    q1, q2 = poly_b, poly_b.roll(-1, dims=1)
    r = (p2 - p1)[:, :, None, :]  # (K, V, 1, 2)
    s = (q2 - q1)[:, None, :, :]  # (K, 1, V, 2)
    qp = q1[:, None, :, :] - p1[:, :, None, :]  # (K, V, V, 2)
    denom = r[..., 0] * s[..., 1] - r[..., 1] * s[..., 0]  # (K, V, V)
    safe = torch.where(denom.abs() > eps, denom, torch.ones_like(denom))
    t = (qp[..., 0] * s[..., 1] - qp[..., 1] * s[..., 0]) / safe
    u = (qp[..., 0] * r[..., 1] - qp[..., 1] * r[..., 0]) / safe
    crossing_ok = (denom.abs() > eps) & (t >= -1e-9) & (t <= 1 + 1e-9) & (u >= -1e-9) & (u <= 1 + 1e-9)
    crossings = (p1[:, :, None, :] + t[..., None] * r).reshape(k, v * v, 2)  # (K, V*V, 2)
    scale = max(float(poly_a.abs().max()), float(poly_b.abs().max()), 1.0)
    points = torch.cat([poly_a, poly_b, crossings], dim=1)  # (K, 2V + V*V, 2)
    valid = torch.cat([_inside_convex(poly_a, poly_b, eps * scale), _inside_convex(poly_b, poly_a, eps * scale), crossing_ok.reshape(k, -1)], dim=1)
    count = valid.sum(1)
    weights = valid.to(points.dtype)
    centre = (points * weights[..., None]).sum(1) / count.clamp(min=1)[:, None].to(points.dtype)  # (K, 2)
    angle = torch.atan2(points[..., 1] - centre[:, None, 1], points[..., 0] - centre[:, None, 0])
    angle = torch.where(valid, angle, torch.full_like(angle, 10.0))  # invalid points sort last
    order = angle.argsort(dim=1)
    ordered = points.gather(1, order[..., None].expand(-1, -1, 2))
    ordered_valid = valid.gather(1, order)
    first = ordered[:, :1, :].expand_as(ordered)
    ordered = torch.where(ordered_valid[..., None], ordered, first)  # invalid -> repeat the first vertex
    area = polygon_area(ordered)
    return torch.where(count >= 3, area, torch.zeros_like(area))


def _clipped_pairs(corners_a: Tensor, corners_b: Tensor) -> Tensor:
    """(N, M) intersection areas of convex polygons (N, V, 2) and (M, V, 2).

    Only pairs whose circumscribed circles overlap go through the exact clipping.
    """
    n, m = corners_a.shape[0], corners_b.shape[0]
    out = corners_a.new_zeros(n, m)
    if n == 0 or m == 0:
        return out
    centre_a, centre_b = corners_a.mean(1), corners_b.mean(1)
    radius_a = (corners_a - centre_a[:, None]).norm(dim=-1).max(1).values
    radius_b = (corners_b - centre_b[:, None]).norm(dim=-1).max(1).values
    near = torch.cdist(centre_a, centre_b) < radius_a[:, None] + radius_b[None, :]
    ia, ib = torch.nonzero(near, as_tuple=True)
    out[ia, ib] = convex_intersection_area(corners_a[ia], corners_b[ib])
    return out


def bev_intersection(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """(N, M) BEV intersection areas of LiDAR boxes (N, 7) and (M, 7)."""
    return _clipped_pairs(bev_corners(boxes_a), bev_corners(boxes_b))


def bev_iou(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """(N, M) exact rotated IoU in bird's-eye view of LiDAR boxes (x, y, z, l, w, h, heading)."""
    inter = bev_intersection(boxes_a, boxes_b)
    area_a = (boxes_a[:, 3] * boxes_a[:, 4])[:, None]
    area_b = (boxes_b[:, 3] * boxes_b[:, 4])[None, :]
    return inter / (area_a + area_b - inter).clamp(min=1e-12)


def iou_3d(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """(N, M) exact 3D IoU of LiDAR boxes (upright, so the volume is BEV area x height overlap)."""
    inter = bev_intersection(boxes_a, boxes_b)
    top = torch.minimum((boxes_a[:, 2] + boxes_a[:, 5] / 2)[:, None], (boxes_b[:, 2] + boxes_b[:, 5] / 2)[None, :])
    bottom = torch.maximum((boxes_a[:, 2] - boxes_a[:, 5] / 2)[:, None], (boxes_b[:, 2] - boxes_b[:, 5] / 2)[None, :])
    inter = inter * (top - bottom).clamp(min=0)
    vol_a = boxes_a[:, 3:6].prod(1)[:, None]
    vol_b = boxes_b[:, 3:6].prod(1)[None, :]
    return inter / (vol_a + vol_b - inter).clamp(min=1e-12)


def camera_bev_iou(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """(N, M) BEV IoU (x-z plane) of KITTI camera boxes (x, y, z, h, w, l, ry)."""
    inter = _clipped_pairs(box_corners_camera(boxes_a)[:, :4][..., [0, 2]], box_corners_camera(boxes_b)[:, :4][..., [0, 2]])
    area_a = (boxes_a[:, 4] * boxes_a[:, 5])[:, None]
    area_b = (boxes_b[:, 4] * boxes_b[:, 5])[None, :]
    return inter / (area_a + area_b - inter).clamp(min=1e-12)


def camera_iou_3d(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """(N, M) 3D IoU of KITTI camera boxes; a box spans y - h .. y (y points down)."""
    inter = _clipped_pairs(box_corners_camera(boxes_a)[:, :4][..., [0, 2]], box_corners_camera(boxes_b)[:, :4][..., [0, 2]])
    low = torch.minimum(boxes_a[:, 1][:, None], boxes_b[:, 1][None, :])
    high = torch.maximum((boxes_a[:, 1] - boxes_a[:, 3])[:, None], (boxes_b[:, 1] - boxes_b[:, 3])[None, :])
    inter = inter * (low - high).clamp(min=0)
    vol_a = boxes_a[:, 3:6].prod(1)[:, None]
    vol_b = boxes_b[:, 3:6].prod(1)[None, :]
    return inter / (vol_a + vol_b - inter).clamp(min=1e-12)


def nms_bev(boxes: Tensor, scores: Tensor, iou_threshold: float, max_keep: int | None = None) -> Tensor:
    """Greedy non-maximum suppression on the exact rotated BEV IoU.

    Args:
        boxes: (N, 7) LiDAR boxes.
        scores: (N,) confidences.
        iou_threshold: a box is dropped when its IoU with a kept, higher-scoring box exceeds this.
        max_keep: keep at most this many boxes.

    Returns:
        (K,) int64 indices into `boxes`, by decreasing score.
    """
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = scores.argsort(descending=True)
    overlaps = bev_iou(boxes[order], boxes[order]).cpu() > iou_threshold  # (N, N)
    suppressed = torch.zeros(order.shape[0], dtype=torch.bool)
    keep: list[int] = []
    for i in range(order.shape[0]):
        if suppressed[i]:
            continue
        keep.append(i)
        if max_keep is not None and len(keep) >= max_keep:
            break
        suppressed |= overlaps[i]
    return order[torch.tensor(keep, dtype=torch.long, device=boxes.device)]
