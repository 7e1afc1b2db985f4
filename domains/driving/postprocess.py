"""Decode head outputs into per-frame detections: peaks -> boxes -> rotated BEV NMS -> KITTI fields.

A detection carries its LiDAR box, its KITTI camera box (x, y, z, h, w, l, ry), the 2D box and
alpha obtained by projecting the 3D box with the frame's P2, the class name and the score. The
model input is never augmented at evaluation or prediction, so boxes are in the frame's LiDAR frame.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mmapps_domains.driving.geometry import boxes_lidar_to_camera, boxes_to_image_boxes, observation_angle
from mmapps_domains.driving.iou import nms_bev

DEFAULT_DECODE = {"max_detections": 60, "score_threshold": 0.05, "nms_iou": 0.1, "pre_nms": 200}


def decode_boxes(heatmap: Tensor, regression: Tensor, grid: dict[str, Any], pre_nms: int) -> tuple[Tensor, Tensor, Tensor]:
    """Peaks of one frame's heatmap (K, H, W) -> LiDAR boxes (N, 7), scores (N,), class indices (N,)."""
    k, h, w = heatmap.shape
    heat = torch.sigmoid(heatmap.float())
    peaks = heat * (F.max_pool2d(heat[None], 3, 1, 1)[0] == heat)
    scores, flat = peaks.reshape(-1).topk(min(pre_nms, peaks.numel()))
    cls = flat // (h * w)
    row, col = (flat % (h * w)) // w, flat % w
    code = regression.float()[:, row, col].T  # (N, 8)
    cell = grid["cell"]
    x = (col.float() + code[:, 0]) * cell + grid["x_min"]
    y = (row.float() + code[:, 1]) * cell + grid["y_min"]
    dims = code[:, 3:6].clamp(-3, 3).exp()
    heading = torch.atan2(code[:, 6], code[:, 7])
    boxes = torch.cat([x[:, None], y[:, None], code[:, 2:3], dims, heading[:, None]], dim=1)
    return boxes, scores, cls


def frame_detections(boxes: Tensor, scores: Tensor, cls: Tensor, classes: tuple[str, ...], meta: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """Threshold, per-class rotated NMS and KITTI fields for one frame (JSON-able dict of lists)."""
    keep = scores >= settings["score_threshold"]
    boxes, scores, cls = boxes[keep], scores[keep], cls[keep]
    kept = []
    for c in cls.unique().tolist():  # per class: a few classes
        idx = torch.nonzero(cls == c).squeeze(1)
        kept.append(idx[nms_bev(boxes[idx], scores[idx], settings["nms_iou"])])
    order = torch.cat(kept) if kept else torch.zeros(0, dtype=torch.long)
    order = order[scores[order].argsort(descending=True)][: settings["max_detections"]]
    boxes, scores, cls = boxes[order].double(), scores[order], cls[order]
    calib = meta["calib"]
    r0, tr, p2 = (torch.tensor(calib[k], dtype=torch.float64) for k in ("R0_rect", "Tr_velo_to_cam", "P2"))
    cam = boxes_lidar_to_camera(boxes, r0, tr)
    image_boxes = boxes_to_image_boxes(cam, p2, tuple(meta["image_size"]))
    return {
        "name": [classes[i] for i in cls.tolist()],
        "score": scores.tolist(),
        "boxes_lidar": boxes.tolist(),
        "boxes_camera": cam.tolist(),
        "bbox": image_boxes.tolist(),
        "alpha": observation_angle(cam).tolist(),
    }


def postprocess(outputs: dict[str, Any], batch: Any, settings: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Model outputs of a batch -> one detection dict per frame (see `frame_detections`)."""
    settings = {**DEFAULT_DECODE, **(settings or {}), **outputs.get("decode", {})}
    grid = outputs["grid"]
    results = []
    with torch.no_grad():
        for i, meta in enumerate(batch.meta):
            boxes, scores, cls = decode_boxes(outputs["heatmap"][i].detach().cpu(), outputs["regression"][i].detach().cpu(), grid, settings["pre_nms"])
            results.append(frame_detections(boxes, scores, cls, tuple(grid["classes"]), meta, settings))
    return results
