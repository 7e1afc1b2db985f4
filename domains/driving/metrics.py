"""Dataset-level KITTI metrics over prediction records (``TaskSpec.metrics``)."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from mmapps_domains.driving.evaluation import KittiEvalResult, kitti_eval

PRIMARY_METRIC = "bev_ap_r40/Car/moderate"


def gt_annotation(target: Any) -> dict[str, np.ndarray]:
    """The label_2 columns of a record's target (``{"kitti": {...}}`` or the columns themselves)."""
    cols = target["kitti"] if isinstance(target, dict) and "kitti" in target else target
    n = len(cols["name"])
    return {
        "name": np.array(cols["name"], dtype=object).reshape(n),
        "truncated": np.asarray(cols["truncated"], dtype=np.float64).reshape(n),
        "occluded": np.asarray(cols["occluded"], dtype=np.int64).reshape(n),
        "alpha": np.asarray(cols["alpha"], dtype=np.float64).reshape(n),
        "bbox": np.asarray(cols["bbox"], dtype=np.float64).reshape(n, 4),
        "dimensions": np.asarray(cols["dimensions"], dtype=np.float64).reshape(n, 3),
        "location": np.asarray(cols["location"], dtype=np.float64).reshape(n, 3),
        "rotation_y": np.asarray(cols["rotation_y"], dtype=np.float64).reshape(n),
        "score": np.zeros(n),
    }


def detection_annotation(prediction: dict[str, Any]) -> dict[str, np.ndarray]:
    """A postprocessed detection dict -> evaluation columns (dimensions as l, h, w like label_2 arrays)."""
    n = len(prediction["name"])
    cam = np.asarray(prediction["boxes_camera"], dtype=np.float64).reshape(n, 7)
    return {
        "name": np.array(prediction["name"], dtype=object).reshape(n),
        "truncated": np.zeros(n),
        "occluded": np.zeros(n, dtype=np.int64),
        "alpha": np.asarray(prediction["alpha"], dtype=np.float64).reshape(n),
        "bbox": np.asarray(prediction["bbox"], dtype=np.float64).reshape(n, 4),
        "dimensions": cam[:, [5, 3, 4]],
        "location": cam[:, :3],
        "rotation_y": cam[:, 6],
        "score": np.asarray(prediction["score"], dtype=np.float64).reshape(n),
    }


def evaluate_records(records: Sequence[Any], classes: Sequence[str], min_iou: dict[str, float] | None = None,
                     iou_precision: str = "float64") -> KittiEvalResult:
    """Run the KITTI evaluation over `PredictionRecord`s (prediction = detections, target = the frame's labels)."""
    gts = [gt_annotation(r.target) for r in records]
    dts = [detection_annotation(r.prediction) for r in records]
    return kitti_eval(gts, dts, classes, min_iou, iou_precision)


def detection_metrics(records: Sequence[Any], cfg: Any) -> dict[str, float]:
    """KITTI AP (bbox / BEV / 3D / AOS, R40 and R11, per class and level) for the core trainer.

    The primary metric is ``bev_ap_r40/Car/moderate`` (fractions in [0, 1]).
    """
    from mmapps_domains.driving.options import DrivingDataOptions, parse_options

    options = parse_options(DrivingDataOptions, cfg.data.options, "data.options")
    result = evaluate_records(records, options.classes, options.min_iou, options.iou_precision)
    metrics = dict(result.ap)
    moderate = [metrics[f"bev_ap_r40/{c}/moderate"] for c in options.classes]
    metrics["bev_ap_r40/mean/moderate"] = float(np.mean(moderate))
    metrics["3d_ap_r40/mean/moderate"] = float(np.mean([metrics[f"3d_ap_r40/{c}/moderate"] for c in options.classes]))
    metrics.update(primary_interval(records, cfg, options.classes))
    return metrics


def primary_interval(records: Sequence[Any], cfg: Any, classes: Sequence[str]) -> dict[str, float]:
    """The group-bootstrap interval of ``bev_ap_r40/Car/moderate`` (drives resampled whole), as the core tasks write theirs.

    Only the primary metric: each resample goes through `primary_ap_resampler` (the frames'
    overlaps computed once), about a millisecond where the full evaluation takes a second. Nothing
    when ``cfg.eval.bootstrap_resamples`` is 0 (the per-epoch validation) or Car is not an evaluated class.
    """
    from mmapps.metrics import bootstrap_ci
    from mmapps.tasks.intervals import eval_settings

    n, level, seed = eval_settings(cfg)
    if n <= 0 or len(records) < 2 or "Car" not in classes:
        return {}
    on_rows = primary_ap_resampler(records, cfg)
    ci = bootstrap_ci(on_rows, [np.arange(len(records))], groups=np.array([str(getattr(r, 'group_id', i)) for i, r in enumerate(records)]),
                      n_resamples=n, level=level, seed=seed)
    return {f"{PRIMARY_METRIC}/ci_low": ci.low, f"{PRIMARY_METRIC}/ci_high": ci.high, f"{PRIMARY_METRIC}/ci_degenerate": float(ci.n_degenerate)}


def primary_ap_resampler(records: Sequence[Any], cfg: Any) -> Callable[[np.ndarray], float]:
    """``TaskSpec.bootstrap_metric``: ``bev_ap_r40/Car/moderate`` of a resample (row indices) of frames.

    The overlaps, devkit filtering and true-positive scores of each frame are computed once; a
    resample pools the chosen frames (repeats included) into the same threshold selection and
    precision curve as `kitti_eval`, so its value on all rows equals `detection_metrics`.
    """
    from mmapps_domains.driving.evaluation import DEFAULT_MIN_IOU, LEVELS, ap_r40, class_frames, curve_from_frames, frame_overlaps
    from mmapps_domains.driving.options import DrivingDataOptions, parse_options

    options = parse_options(DrivingDataOptions, cfg.data.options, "data.options")
    metric, cls, level = "bev", "Car", LEVELS.index("moderate")  # PRIMARY_METRIC
    min_overlap = {**DEFAULT_MIN_IOU, **(options.min_iou or {})}.get(cls, 0.5)
    gts = [gt_annotation(r.target) for r in records]
    dts = [detection_annotation(r.prediction) for r in records]
    overlaps = [frame_overlaps(dt, gt, metric, options.iou_precision) for gt, dt in zip(gts, dts)]
    frames = class_frames(gts, dts, cls, level, metric, min_overlap, overlaps)

    def on_rows(rows: np.ndarray) -> float:
        return ap_r40(curve_from_frames([frames[i] for i in rows], metric, min_overlap)["precision"])

    return on_rows
