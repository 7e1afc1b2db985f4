"""Rotated IoU in float32 as the python KITTI devkits compute it (OpenPCDet / MMDetection3D).

Their ``kitti_object_eval_python`` casts boxes to float32 and runs ``rotate_iou_gpu_eval``
(numba CUDA): corners in float32, corner-in-box tests and edge crossings in float32, the
intersection polygon sorted by a pseudo-angle, its area summed in float64 by a triangle fan, the
IoU stored in float32; the 3D IoU multiplies that BEV intersection by the height overlap in
float64 and stores float32 again. This module repeats those steps with numpy, vectorised over box
pairs and with the same type promotions, so a pair near an IoU threshold is classified as those
devkits classify it. (The GPU may fuse multiply-adds, so a pair within a float32 ulp of the threshold can still
differ; identical boxes, where the devkit's corner tests are degenerate, count as IoU 1.) Published KITTI numbers mostly come from these devkits.
"""

from __future__ import annotations

import numpy as np

F32 = np.float32


def _corners(boxes: np.ndarray) -> np.ndarray:
    """(K, 4, 2) float32 corners of (K, 5) float32 boxes (x, y, dx, dy, angle) as the devkit orders them."""
    x, y, dx, dy, angle = (boxes[:, k] for k in range(5))
    c, s = np.cos(angle), np.sin(angle)  # float32
    half_x = (np.stack([-dx, -dx, dx, dx], 1).astype(np.float64) / 2).astype(F32)
    half_y = (np.stack([-dy, dy, dy, -dy], 1).astype(np.float64) / 2).astype(F32)
    cx = c[:, None] * half_x + s[:, None] * half_y + x[:, None]
    cy = -s[:, None] * half_x + c[:, None] * half_y + y[:, None]
    return np.stack([cx, cy], -1).astype(F32)


def _inside(px: np.ndarray, py: np.ndarray, quad: np.ndarray) -> np.ndarray:
    ab0, ab1 = quad[:, 1, 0] - quad[:, 0, 0], quad[:, 1, 1] - quad[:, 0, 1]
    ad0, ad1 = quad[:, 3, 0] - quad[:, 0, 0], quad[:, 3, 1] - quad[:, 0, 1]
    ap0, ap1 = px - quad[:, 0, 0], py - quad[:, 0, 1]
    abab, abap = ab0 * ab0 + ab1 * ab1, ab0 * ap0 + ab1 * ap1
    adad, adap = ad0 * ad0 + ad1 * ad1, ad0 * ap0 + ad1 * ap1
    return (abab >= abap) & (abap >= 0) & (adad >= adap) & (adap >= 0)


def _crossing(p1: np.ndarray, p2: np.ndarray, i: int, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a, b, c, d = p1[:, i], p1[:, (i + 1) % 4], p2[:, j], p2[:, (j + 1) % 4]
    ba0, ba1 = b[:, 0] - a[:, 0], b[:, 1] - a[:, 1]
    da0, ca0 = d[:, 0] - a[:, 0], c[:, 0] - a[:, 0]
    da1, ca1 = d[:, 1] - a[:, 1], c[:, 1] - a[:, 1]
    acd = da1 * ca0 > ca1 * da0
    bcd = (d[:, 1] - b[:, 1]) * (c[:, 0] - b[:, 0]) > (c[:, 1] - b[:, 1]) * (d[:, 0] - b[:, 0])
    abc = ca1 * ba0 > ba1 * ca0
    abd = da1 * ba0 > ba1 * da0
    dc0, dc1 = d[:, 0] - c[:, 0], d[:, 1] - c[:, 1]
    abba = a[:, 0] * b[:, 1] - b[:, 0] * a[:, 1]
    cddc = c[:, 0] * d[:, 1] - d[:, 0] * c[:, 1]
    dh = ba1 * dc0 - ba0 * dc1
    hit = (acd != bcd) & (abc != abd)
    with np.errstate(divide="ignore", invalid="ignore"):
        return hit, (abba * dc0 - ba0 * cddc) / dh, (abba * dc1 - ba1 * cddc) / dh


def intersection_area_f32(boxes_1: np.ndarray, boxes_2: np.ndarray) -> np.ndarray:
    """(K,) float64 intersection areas of paired float32 boxes (x, y, dx, dy, angle), the devkit's ``inter``."""
    k = boxes_1.shape[0]
    if k == 0:
        return np.zeros(0)
    q1, q2 = _corners(boxes_1), _corners(boxes_2)
    cand, valid = [], []
    for i in range(4):  # the devkit's order: corner i of 1 in 2, then corner i of 2 in 1
        cand.append(q1[:, i]), valid.append(_inside(q1[:, i, 0], q1[:, i, 1], q2))
        cand.append(q2[:, i]), valid.append(_inside(q2[:, i, 0], q2[:, i, 1], q1))
    for i in range(4):
        for j in range(4):
            hit, x, y = _crossing(q1, q2, i, j)
            cand.append(np.stack([x, y], 1).astype(F32)), valid.append(hit)
    pts = np.stack(cand, 1)  # (K, 24, 2) float32
    ok = np.stack(valid, 1)  # (K, 24)
    count = ok.sum(1)
    order = np.argsort(~ok, axis=1, kind="stable")  # valid points first, in the devkit's order
    pts = np.take_along_axis(pts, order[..., None], 1)
    ok = np.take_along_axis(ok, order, 1)
    centre = np.zeros((k, 2), dtype=F32)
    for n in range(pts.shape[1]):  # sequential float32 sums, as the kernel accumulates
        centre = np.where(ok[:, n, None], centre + pts[:, n], centre).astype(F32)
    centre = (centre.astype(np.float64) / np.maximum(count, 1)[:, None]).astype(F32)
    v = (pts - centre[:, None]).astype(F32)
    with np.errstate(divide="ignore", invalid="ignore"):
        dist = np.sqrt(v[..., 0] * v[..., 0] + v[..., 1] * v[..., 1])
        v0, v1 = v[..., 0] / dist, v[..., 1] / dist
    key = np.where(v1 < 0, (-2.0 - v0.astype(np.float64)).astype(F32), v0)
    key = np.where(ok, key, np.inf)
    pts = np.take_along_axis(pts, np.argsort(key, axis=1, kind="stable")[..., None], 1)  # insertion sort is stable
    area = np.zeros(k)
    a = pts[:, 0]
    for n in range(int(count.max(initial=0)) - 2):  # the unused slots hold NaN crossings: masked
        b, c = pts[:, n + 1], pts[:, n + 2]
        with np.errstate(invalid="ignore"):
            tri = ((a[:, 0] - c[:, 0]) * (b[:, 1] - c[:, 1]) - (a[:, 1] - c[:, 1]) * (b[:, 0] - c[:, 0])).astype(np.float64) / 2.0
        area += np.where(n < count - 2, np.abs(np.nan_to_num(tri)), 0.0)
    # coincident boxes are the devkit's degenerate case (corners on the other box's edges, where its
    # float32 tests flip, see OpenPCDet#972); on the GPU they score 1 on real labels: take the box area
    same = (boxes_1 == boxes_2).all(1)
    return np.where(same, boxes_1[:, 2].astype(np.float64) * boxes_1[:, 3], area)


def _pairs(dt: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    i, j = np.meshgrid(np.arange(len(dt)), np.arange(len(gt)), indexing="ij")
    return i.ravel(), j.ravel()


def camera_bev_iou_f32(dt: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(N, M) float32 BEV IoU of KITTI camera boxes (x, y, z, h, w, l, ry), detections x ground truth, as the devkit."""
    out = np.zeros((len(dt), len(gt)), dtype=F32)
    if out.size == 0:
        return out
    i, j = _pairs(dt, gt)
    b1 = np.asarray(dt, dtype=np.float64)[:, [0, 2, 5, 4, 6]].astype(F32)[i]  # x, z, l, w, ry: the query (detection) box first
    b2 = np.asarray(gt, dtype=np.float64)[:, [0, 2, 5, 4, 6]].astype(F32)[j]
    inter = intersection_area_f32(b1, b2)
    union = (b1[:, 2] * b1[:, 3] + b2[:, 2] * b2[:, 3]).astype(F32) - inter  # float32 areas, float64 union
    with np.errstate(divide="ignore", invalid="ignore"):
        out[i, j] = (inter / union).astype(F32)
    return out


def camera_iou_3d_f32(dt: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(N, M) float32 3D IoU of KITTI camera boxes as the devkit's ``d3_box_overlap``."""
    out = np.zeros((len(dt), len(gt)), dtype=F32)
    if out.size == 0:
        return out
    dt, gt = np.asarray(dt, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    i, j = _pairs(dt, gt)
    inter = intersection_area_f32(dt[:, [0, 2, 5, 4, 6]].astype(F32)[i], gt[:, [0, 2, 5, 4, 6]].astype(F32)[j]).astype(F32)
    g, d = gt[j], dt[i]  # the height overlap is float64, on the boxes as read (y is the bottom, y - h the top)
    iw = np.minimum(g[:, 1], d[:, 1]) - np.maximum(g[:, 1] - g[:, 3], d[:, 1] - d[:, 3])
    inc = iw * inter.astype(np.float64)
    union = g[:, 3] * g[:, 4] * g[:, 5] + d[:, 3] * d[:, 4] * d[:, 5] - inc
    with np.errstate(divide="ignore", invalid="ignore"):
        out[i, j] = np.where((inter > 0) & (iw > 0), inc / union, 0.0).astype(F32)
    return out
