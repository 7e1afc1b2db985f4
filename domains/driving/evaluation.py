"""The KITTI object-detection evaluation (2D bbox, BEV, 3D, AOS at AP_R40 and AP_R11).

A re-implementation of the official devkit as ported by OpenPCDet (``kitti_object_eval_python``):
the same ground-truth cleaning (difficulty filters, neighbouring classes Van/Person_sitting ignored,
DontCare regions absorbing 2D false positives), the same greedy matching, the same score thresholds
picked at recall points, the same interpolation. IoU in BEV and 3D is the exact rotated IoU of
`mmapps_domains.driving.iou`. AP values are fractions in [0, 1] (the devkit prints percentages).

Annotations are dicts of column arrays as made by `kitti.objects_to_arrays`: name, truncated,
occluded, alpha, bbox (M, 4), dimensions (M, 3) as (l, h, w), location (M, 3), rotation_y, score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch

from mmapps_domains.driving.iou import camera_bev_iou, camera_iou_3d

LEVELS: tuple[str, ...] = ("easy", "moderate", "hard")
MIN_HEIGHT = (40.0, 25.0, 25.0)
MAX_OCCLUSION = (0, 1, 2)
MAX_TRUNCATION = (0.15, 0.3, 0.5)
METRICS: tuple[str, ...] = ("bbox", "bev", "3d")
DEFAULT_MIN_IOU: dict[str, float] = {"Car": 0.7, "Van": 0.7, "Truck": 0.7, "Pedestrian": 0.5, "Person_sitting": 0.5, "Cyclist": 0.5, "Tram": 0.7, "Misc": 0.5}
NEIGHBOUR: dict[str, str] = {"car": "van", "pedestrian": "person_sitting"}
N_SAMPLE_PTS = 41


@dataclass
class KittiEvalResult:
    """AP values and the interpolated precision / recall curves behind them.

    Attributes:
        ap: flat keys like ``"bev_ap_r40/Car/moderate"`` (also ``aos_ap_*`` and ``num_gt/*``) -> value.
        curves: (metric, class, level) -> dict with ``precision`` (41,) (interpolated, as used by
            AP), ``recall`` (41,) measured at the same score thresholds, and ``aos``.
    """

    ap: dict[str, float] = field(default_factory=dict)
    curves: dict[tuple[str, str, str], dict[str, np.ndarray]] = field(default_factory=dict)


def image_box_overlap(boxes: np.ndarray, query: np.ndarray, criterion: int = -1) -> np.ndarray:
    """2D overlaps (N, K): IoU (criterion -1), or intersection over the area of `boxes` (0) / of `query` (1)."""
    if len(boxes) == 0 or len(query) == 0:
        return np.zeros((len(boxes), len(query)))
    iw = np.minimum(boxes[:, None, 2], query[None, :, 2]) - np.maximum(boxes[:, None, 0], query[None, :, 0])
    ih = np.minimum(boxes[:, None, 3], query[None, :, 3]) - np.maximum(boxes[:, None, 1], query[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_b = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[:, None]
    area_q = ((query[:, 2] - query[:, 0]) * (query[:, 3] - query[:, 1]))[None, :]
    denom = {-1: area_b + area_q - inter, 0: area_b + 0 * area_q, 1: area_q + 0 * area_b}[criterion]
    return np.where(denom > 0, inter / np.where(denom > 0, denom, 1), 0.0)


def _camera_boxes(anno: Mapping[str, np.ndarray]) -> torch.Tensor:
    lhw = np.asarray(anno["dimensions"], dtype=np.float64).reshape(-1, 3)
    hwl = lhw[:, [1, 2, 0]]
    boxes = np.concatenate([np.asarray(anno["location"], dtype=np.float64).reshape(-1, 3), hwl, np.asarray(anno["rotation_y"], dtype=np.float64).reshape(-1, 1)], 1)
    return torch.from_numpy(boxes)


def frame_overlaps(dt: Mapping[str, np.ndarray], gt: Mapping[str, np.ndarray], metric: str, iou_precision: str = "float64") -> np.ndarray:
    """Overlaps (num_dt, num_gt) of one frame for metric bbox / bev / 3d.

    ``iou_precision`` "float64" is the exact rotated IoU; "float32" repeats the float32 IoU of the
    python devkits (OpenPCDet / MMDetection3D), whose published numbers a comparison must match.
    """
    if len(dt["name"]) == 0 or len(gt["name"]) == 0:
        return np.zeros((len(dt["name"]), len(gt["name"])))
    if metric == "bbox":
        return image_box_overlap(np.asarray(dt["bbox"], dtype=np.float64), np.asarray(gt["bbox"], dtype=np.float64))
    if iou_precision == "float32":
        from mmapps_domains.driving.iou_devkit import camera_bev_iou_f32, camera_iou_3d_f32

        fn32 = camera_bev_iou_f32 if metric == "bev" else camera_iou_3d_f32
        return fn32(_camera_boxes(dt).numpy(), _camera_boxes(gt).numpy()).astype(np.float64)
    if iou_precision != "float64":
        raise ValueError(f"iou_precision {iou_precision!r}: expected float64 or float32")
    fn = camera_bev_iou if metric == "bev" else camera_iou_3d
    return fn(_camera_boxes(dt), _camera_boxes(gt)).numpy()


def clean_data(gt: Mapping[str, np.ndarray], dt: Mapping[str, np.ndarray], cls: str, level: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """Devkit filtering: which gt count (0), are ignored (1) or belong to other classes (-1); same for detections.

    Returns:
        number of valid gt, ignored_gt (M,), ignored_dt (N,), DontCare 2D boxes (D, 4).
    """
    name = cls.lower()
    gt_names = np.array([str(n).lower() for n in gt["name"]])
    bbox = np.asarray(gt["bbox"], dtype=np.float64).reshape(-1, 4)
    height = bbox[:, 3] - bbox[:, 1]
    valid_class = np.where(gt_names == name, 1, np.where(gt_names == NEIGHBOUR.get(name, "\0"), 0, -1))
    hard = (np.asarray(gt["occluded"]) > MAX_OCCLUSION[level]) | (np.asarray(gt["truncated"]) > MAX_TRUNCATION[level]) | (height <= MIN_HEIGHT[level])
    ignored_gt = np.where((valid_class == 1) & ~hard, 0, np.where((valid_class == 0) | ((valid_class == 1) & hard), 1, -1))
    dc = bbox[gt_names == "dontcare"]
    dt_names = np.array([str(n).lower() for n in dt["name"]])
    dt_bbox = np.asarray(dt["bbox"], dtype=np.float64).reshape(-1, 4)
    dt_height = np.abs(dt_bbox[:, 3] - dt_bbox[:, 1])
    ignored_dt = np.where(dt_height < MIN_HEIGHT[level], 1, np.where(dt_names == name, 0, -1))
    return int((ignored_gt == 0).sum()), ignored_gt, ignored_dt, dc


def compute_statistics(overlaps: np.ndarray, gt_alpha: np.ndarray, dt_alpha: np.ndarray, dt_score: np.ndarray, dt_bbox: np.ndarray,
                       ignored_gt: np.ndarray, ignored_dt: np.ndarray, dc_boxes: np.ndarray, metric: str, min_overlap: float,
                       thresh: float = 0.0, compute_fp: bool = False, compute_aos: bool = False) -> tuple[int, int, int, float, list[float]]:
    """Match one frame's detections to ground truth (the devkit's ``computeStatistics``).

    Returns:
        tp, fp, fn, orientation similarity (-1 when undefined), scores of the true positives.
    """
    n_dt = len(dt_score)
    assigned = np.zeros(n_dt, dtype=bool)
    below = dt_score < thresh if compute_fp else np.zeros(n_dt, dtype=bool)
    usable = (ignored_dt != -1) & ~below
    tp = fp = fn = 0
    scores: list[float] = []
    deltas: list[float] = []
    for i in np.flatnonzero(ignored_gt != -1):
        cand = usable & ~assigned & (overlaps[:, i] > min_overlap)
        det = -1
        if cand.any():
            if not compute_fp:
                idx = np.flatnonzero(cand)
                det = int(idx[np.argmax(dt_score[idx])])
            else:
                good = cand & (ignored_dt == 0)
                if good.any():
                    idx = np.flatnonzero(good)
                    det = int(idx[np.argmax(overlaps[idx, i])])
                else:
                    det = int(np.flatnonzero(cand)[0])
        if det < 0:
            fn += int(ignored_gt[i] == 0)
        elif ignored_gt[i] == 1 or ignored_dt[det] == 1:
            assigned[det] = True
        else:
            tp += 1
            scores.append(float(dt_score[det]))
            deltas.append(float(gt_alpha[i] - dt_alpha[det]))
            assigned[det] = True
    similarity = -1.0
    if compute_fp:
        free = ~assigned & (ignored_dt == 0) & ~below
        fp = int(free.sum())
        if metric == "bbox" and len(dc_boxes) and free.any():
            to_dc = image_box_overlap(dt_bbox, dc_boxes, 0)  # intersection / detection area
            for d in range(len(dc_boxes)):
                hit = free & (to_dc[:, d] > min_overlap)
                fp -= int(hit.sum())
                free &= ~hit
        if compute_aos and (tp > 0 or fp > 0):
            similarity = float(np.sum((1.0 + np.cos(np.array(deltas))) / 2.0)) if deltas else 0.0
    return tp, fp, fn, similarity, scores


def statistics_at_thresholds(overlaps: np.ndarray, gt_alpha: np.ndarray, dt_alpha: np.ndarray, dt_score: np.ndarray, dt_bbox: np.ndarray,
                             ignored_gt: np.ndarray, ignored_dt: np.ndarray, dc_boxes: np.ndarray, metric: str, min_overlap: float,
                             thresholds: np.ndarray, compute_aos: bool) -> np.ndarray:
    """`compute_statistics` with ``compute_fp=True`` at every score threshold at once.

    The devkit's greedy matching runs once per ground-truth object with (T, N) masks, one row per
    threshold, instead of once per threshold.

    Returns:
        (T, 4) tp, fp, fn, similarity (0 where undefined) per threshold.
    """
    t_count, n_dt = len(thresholds), len(dt_score)
    usable = (dt_score[None, :] >= thresholds[:, None]) & (ignored_dt != -1)[None, :]  # (T, N)
    assigned = np.zeros((t_count, n_dt), dtype=bool)
    tp, fn = np.zeros(t_count), np.zeros(t_count)
    similarity = np.zeros(t_count)
    rows = np.arange(t_count)
    if n_dt == 0:
        fn += float((ignored_gt == 0).sum())
        return np.stack([tp, np.zeros(t_count), fn, similarity], 1)
    for i in np.flatnonzero(ignored_gt != -1):
        cand = usable & ~assigned & (overlaps[:, i] > min_overlap)[None, :]
        good = cand & (ignored_dt == 0)[None, :]
        has_good, has_any = good.any(1), cand.any(1)
        best_good = np.where(good, overlaps[:, i][None, :], -1.0).argmax(1)
        first_any = cand.argmax(1)
        det = np.where(has_good, best_good, np.where(has_any, first_any, -1))
        found = det >= 0
        if ignored_gt[i] == 0:
            fn += ~found
        safe = np.maximum(det, 0)
        counted = found & (ignored_gt[i] == 0) & (ignored_dt[safe] == 0)
        tp += counted
        if compute_aos:
            similarity += np.where(counted, (1.0 + np.cos(gt_alpha[i] - dt_alpha[safe])) / 2.0, 0.0)
        assigned[rows[found], safe[found]] = True
    free = ~assigned & (ignored_dt == 0)[None, :] & (dt_score[None, :] >= thresholds[:, None])
    if metric == "bbox" and len(dc_boxes):
        to_dc = image_box_overlap(dt_bbox, dc_boxes, 0)
        for d in range(len(dc_boxes)):
            free &= ~(to_dc[:, d] > min_overlap)[None, :]
    fp = free.sum(1).astype(float)
    return np.stack([tp, fp, fn, similarity], 1)


def get_thresholds(scores: np.ndarray, num_gt: int, num_sample_pts: int = N_SAMPLE_PTS) -> list[float]:
    """Scores at which recall crosses the ``num_sample_pts`` recall points (the devkit's rule)."""
    scores = np.sort(scores)[::-1]
    current_recall = 0.0
    thresholds = []
    for i, score in enumerate(scores):
        l_recall = (i + 1) / num_gt
        r_recall = (i + 2) / num_gt if i < len(scores) - 1 else l_recall
        if (r_recall - current_recall) < (current_recall - l_recall) and i < len(scores) - 1:
            continue
        thresholds.append(float(score))
        current_recall += 1 / (num_sample_pts - 1.0)
    return thresholds


def _frame_arrays(anno: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    n = len(anno["name"])
    return {
        "alpha": np.asarray(anno["alpha"], dtype=np.float64).reshape(n),
        "score": np.asarray(anno.get("score", np.zeros(n)), dtype=np.float64).reshape(n),
        "bbox": np.asarray(anno["bbox"], dtype=np.float64).reshape(n, 4),
    }


def class_frames(gt_annos: Sequence[Mapping], dt_annos: Sequence[Mapping], cls: str, level: int, metric: str,
                 min_overlap: float, overlaps: list[np.ndarray]) -> list[tuple[tuple, int, list[float]]]:
    """Per frame, for one class, level and metric: the matching inputs, the valid gt count and the TP scores.

    The part of `eval_class` that depends on each frame alone (a resampling loop prepares it once).
    """
    frames = []
    for gt, dt, ov in zip(gt_annos, dt_annos, overlaps):
        n_valid, ignored_gt, ignored_dt, dc = clean_data(gt, dt, cls, level)
        g, d = _frame_arrays(gt), _frame_arrays(dt)
        frame = (ov, g["alpha"], d["alpha"], d["score"], d["bbox"], ignored_gt, ignored_dt, dc)
        frames.append((frame, n_valid, list(compute_statistics(*frame, metric, min_overlap)[4])))
    return frames


def curve_from_frames(frames: Sequence[tuple[tuple, int, list[float]]], metric: str, min_overlap: float) -> dict[str, np.ndarray | int]:
    """Interpolated precision / recall (/ AOS) at the 41 recall points from `class_frames` output (any subset, repeats allowed)."""
    compute_aos = metric == "bbox"
    num_gt = sum(n for _, n, _ in frames)
    all_scores = [s for _, _, scores in frames for s in scores]
    precision, recall, aos = np.zeros(N_SAMPLE_PTS), np.zeros(N_SAMPLE_PTS), np.zeros(N_SAMPLE_PTS)
    thresholds = get_thresholds(np.array(all_scores), num_gt) if num_gt else []
    pr = np.zeros((len(thresholds), 4))
    if thresholds:
        thr = np.array(thresholds)
        for frame, _, _ in frames:
            pr += statistics_at_thresholds(*frame, metric, min_overlap, thr, compute_aos)
    n = len(thresholds)
    if n:
        recall[:n] = pr[:, 0] / np.maximum(pr[:, 0] + pr[:, 2], 1e-12)
        precision[:n] = pr[:, 0] / np.maximum(pr[:, 0] + pr[:, 1], 1e-12)
        aos[:n] = pr[:, 3] / np.maximum(pr[:, 0] + pr[:, 1], 1e-12)
        # interpolation as in the devkit; recall is kept as measured (only precision enters AP)
        precision[:n] = np.maximum.accumulate(precision[:n][::-1])[::-1]
        aos[:n] = np.maximum.accumulate(aos[:n][::-1])[::-1]
    return {"precision": precision, "recall": recall, "aos": aos, "num_gt": num_gt}


def eval_class(gt_annos: Sequence[Mapping], dt_annos: Sequence[Mapping], cls: str, level: int, metric: str,
               min_overlap: float, overlaps: list[np.ndarray]) -> dict[str, np.ndarray | int]:
    """Interpolated precision / recall (/ AOS) at the 41 recall points for one class, level and metric."""
    return curve_from_frames(class_frames(gt_annos, dt_annos, cls, level, metric, min_overlap, overlaps), metric, min_overlap)


def ap_r40(precision: np.ndarray) -> float:
    """AP over the 40 recall points 1/40 .. 1 (recall 0 excluded)."""
    return float(np.sum(precision[1:N_SAMPLE_PTS]) / 40.0)


def ap_r11(precision: np.ndarray) -> float:
    """AP over the 11 recall points 0, 0.1 .. 1."""
    return float(np.sum(precision[0:N_SAMPLE_PTS:4]) / 11.0)


def kitti_eval(gt_annos: Sequence[Mapping], dt_annos: Sequence[Mapping], classes: Sequence[str],
               min_iou: Mapping[str, float] | None = None, iou_precision: str = "float64") -> KittiEvalResult:
    """Evaluate detections against ground truth with the KITTI protocol.

    Args:
        gt_annos: one annotation dict per frame (label_2 content, DontCare included).
        dt_annos: one detection dict per frame, same order (with ``score``).
        classes: classes to report (e.g. Car, Pedestrian, Cyclist).
        min_iou: class -> IoU threshold, default Car 0.7 / Pedestrian 0.5 / Cyclist 0.5.
        iou_precision: "float64" (exact, default) or "float32" (the python devkits' rotated IoU).

    Returns:
        `KittiEvalResult` with keys ``{bbox,bev,3d,aos}_ap_{r40,r11}/<class>/<level>``.
    """
    if len(gt_annos) != len(dt_annos):
        raise ValueError(f"kitti_eval: {len(gt_annos)} ground-truth frames but {len(dt_annos)} detection frames")
    thresholds = {**DEFAULT_MIN_IOU, **(min_iou or {})}
    result = KittiEvalResult()
    for metric in METRICS:
        overlaps = [frame_overlaps(dt, gt, metric, iou_precision) for gt, dt in zip(gt_annos, dt_annos)]
        for cls in classes:
            for level, level_name in enumerate(LEVELS):
                out = eval_class(gt_annos, dt_annos, cls, level, metric, thresholds.get(cls, 0.5), overlaps)
                result.curves[(metric, cls, level_name)] = out
                result.ap[f"{metric}_ap_r40/{cls}/{level_name}"] = ap_r40(out["precision"])
                result.ap[f"{metric}_ap_r11/{cls}/{level_name}"] = ap_r11(out["precision"])
                if metric == "bbox":
                    result.ap[f"aos_ap_r40/{cls}/{level_name}"] = ap_r40(out["aos"])
                    result.ap[f"aos_ap_r11/{cls}/{level_name}"] = ap_r11(out["aos"])
                    result.ap[f"num_gt/{cls}/{level_name}"] = float(out["num_gt"])
    return result
