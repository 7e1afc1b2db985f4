"""Report sections of the driving domain: KITTI AP table, PR curves, BEV and camera figures, and
fusion diagnostics (by range bin and class, and with the camera removed at test time)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Sequence

import numpy as np
import torch

from mmapps_domains.driving.evaluation import LEVELS, kitti_eval
from mmapps_domains.driving.metrics import detection_annotation, gt_annotation
from mmapps_domains.driving.options import DrivingDataOptions, parse_options

RANGE_BINS: tuple[tuple[float, float], ...] = ((0.0, 20.0), (20.0, 30.0), (30.0, 80.0))


def ap_table(ap: dict[str, float], classes: Sequence[str], ks: Sequence[str] = ("bbox", "bev", "3d", "aos")) -> str:
    """Markdown table: one row per class and metric, AP_R40 (AP_R11) per level, in percent like the devkit."""
    lines = ["| class | metric | " + " | ".join(f"{lvl} R40 (R11)" for lvl in LEVELS) + " |", "|---|---|" + "---|" * len(LEVELS)]
    for cls in classes:
        for metric in ks:
            cells = [f"{100 * ap[f'{metric}_ap_r40/{cls}/{lvl}']:.1f} ({100 * ap[f'{metric}_ap_r11/{cls}/{lvl}']:.1f})" for lvl in LEVELS]
            lines.append(f"| {cls} | {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _select(anno: dict[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[keep] for k, v in anno.items()}


def ap_by_range(gts: list[dict], dts: list[dict], classes: Sequence[str], min_iou: dict[str, float] | None = None) -> dict[str, dict[str, float]]:
    """Moderate BEV AP_R40 per range bin (forward distance of the box centre); DontCare kept everywhere."""
    out: dict[str, dict[str, float]] = {}
    for lo, hi in RANGE_BINS:
        g = [_select(a, (a["name"] == "DontCare") | ((a["location"][:, 2] >= lo) & (a["location"][:, 2] < hi))) for a in gts]
        d = [_select(a, (a["location"][:, 2] >= lo) & (a["location"][:, 2] < hi)) for a in dts]
        ap = kitti_eval(g, d, classes, min_iou).ap
        out[f"{lo:.0f}-{hi:.0f} m"] = {c: ap[f"bev_ap_r40/{c}/moderate"] for c in classes} | {f"n_{c}": ap[f"num_gt/{c}/moderate"] for c in classes}
    return out


def predict_dataset(model: torch.nn.Module, dataset: Any, modality_to_layout: dict[str, str], drop_camera: bool = False, batch_size: int = 4) -> list[SimpleNamespace]:
    """Run the model over a dataset (optionally with every camera marked absent); returns record-like objects."""
    from mmapps.data import collate_samples
    from mmapps_domains.driving.postprocess import postprocess

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    records = []
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            samples = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            batch = collate_samples(samples, modality_to_layout)
            if drop_camera and "camera" in batch.inputs:
                batch.inputs["camera"] = batch.inputs["camera"].select(torch.zeros(len(batch), dtype=torch.bool))
            outputs = model(batch.to(device))["objects"]
            for i, pred in enumerate(postprocess(outputs, batch)):
                records.append(SimpleNamespace(sample_id=batch.sample_ids[i], prediction=pred, target=batch.targets["objects"][i], meta=batch.meta[i]))
    model.train(was_training)
    return records


def _figures(ctx: Any, records: list[Any], options: DrivingDataOptions, n: int = 3) -> list:
    from mmapps_domains.driving.kitti import read_image
    from mmapps_domains.driving.visualise import draw_boxes_on_image, gt_lidar_boxes, plot_bev

    figures = []
    dataset = ctx.test_dataset
    by_id = {r.sample_id: r for r in records}
    for i in range(min(n, len(dataset))):
        sample = dataset[i]
        rec = by_id.get(sample.sample_id)
        if rec is None:
            continue
        kitti = sample.targets["objects"]["kitti"]
        calib = sample.meta["calib"]
        gt_boxes, _ = gt_lidar_boxes(kitti, calib)
        pred = rec.prediction
        figures.append(plot_bev(sample.inputs["lidar"].numpy(), gt_boxes, np.asarray(pred["boxes_lidar"]).reshape(-1, 7), pred["score"],
                                options.point_range, ctx.figures_dir / f"driving_bev_{sample.sample_id}.png", f"frame {sample.sample_id}: GT green, detections red"))
        frame = getattr(dataset, "frames", [None] * len(dataset))[i]
        if frame is not None and frame.image is not None:
            from PIL import Image

            image = read_image(frame.image)
            gt_cam = [list(loc) + [d[1], d[2], d[0], ry] for name, loc, d, ry in zip(kitti["name"], kitti["location"], kitti["dimensions"], kitti["rotation_y"]) if name != "DontCare"]
            image = draw_boxes_on_image(image, np.asarray(gt_cam).reshape(-1, 7), np.asarray(calib["P2"]), (40, 220, 40))
            shown = [j for j, s in enumerate(pred["score"]) if s >= 0.3]
            image = draw_boxes_on_image(image, np.asarray(pred["boxes_camera"]).reshape(-1, 7)[shown], np.asarray(calib["P2"]), (230, 30, 30),
                                        [f"{pred['name'][j]} {pred['score'][j]:.2f}" for j in shown])
            path = ctx.figures_dir / f"driving_camera_{sample.sample_id}.png"
            Image.fromarray(image).save(path)
            figures.append(path)
    return figures


def kitti_sections(ctx: Any) -> list:
    """Report sections (see module docstring); ``ctx`` is a `mmapps.report.ReportContext`."""
    from mmapps.report import Section
    from mmapps_domains.driving import domain
    from mmapps_domains.driving.visualise import plot_pr_curves

    options = parse_options(DrivingDataOptions, ctx.cfg.data.options, "data.options")
    records = list(ctx.records.get("objects", []))
    if not records:
        return [Section("KITTI evaluation", "No test predictions were recorded.")]
    ctx.figures_dir.mkdir(parents=True, exist_ok=True)
    gts = [gt_annotation(r.target) for r in records]
    dts = [detection_annotation(r.prediction) for r in records]
    result = kitti_eval(gts, dts, options.classes, options.min_iou, options.iou_precision)
    pr = plot_pr_curves(result.curves, options.classes, ctx.figures_dir / "driving_pr_curves.png")
    counts = ", ".join(f"{c}: {int(result.ap[f'num_gt/{c}/moderate'])}" for c in options.classes)
    sections = [
        Section("KITTI AP (test split)", f"AP in percent, AP_R40 with AP_R11 in brackets; IoU thresholds {dict((c, options.min_iou.get(c, {'Car': 0.7}.get(c, 0.5))) for c in options.classes)} on the {options.iou_precision} IoU; "
                f"moderate ground-truth objects: {counts}.\n\n" + ap_table(result.ap, options.classes), [pr], data={"ap": result.ap}),
        Section("Detections: bird's-eye view and camera", "Ground truth in green, detections in red (camera: score >= 0.3), boxes projected with P2.", _figures(ctx, records, options)),
    ]
    markdown, by_range = _fusion_markdown(ctx, gts, dts, options, {m.name: m.layout for m in domain.modalities})
    sections.append(Section("Fusion diagnostics", markdown, data={"bev_ap_r40_moderate_by_range": by_range}))
    return sections


def _fusion_markdown(ctx: Any, gts: list, dts: list, options: DrivingDataOptions, layouts: dict[str, str]) -> tuple[str, dict]:
    classes = options.classes
    rows = {"as trained": ap_by_range(gts, dts, classes, options.min_iou)}
    fusion = getattr(ctx.model, "fusion", "lidar_only")
    if ctx.model is not None and fusion != "lidar_only" and ctx.test_dataset is not None:
        blind = predict_dataset(ctx.model, ctx.test_dataset, layouts, drop_camera=True)
        rows["camera removed at test time"] = ap_by_range([gt_annotation(r.target) for r in blind], [detection_annotation(r.prediction) for r in blind], classes, options.min_iou)
    bins = list(next(iter(rows.values())))
    lines = [f"Fusion: `{fusion}`. Moderate BEV AP_R40 (percent) by forward range of the box centre; n = moderate ground-truth count.", "",
             "| model input | class | " + " | ".join(bins) + " |", "|---|---|" + "---|" * len(bins)]
    for name, by_bin in rows.items():
        for c in classes:
            lines.append(f"| {name} | {c} | " + " | ".join(f"{100 * by_bin[b][c]:.1f} (n={int(by_bin[b][f'n_{c}'])})" for b in bins) + " |")
    lines.append("\nAs in the devkit, AP_R40 of a bin with n < 40 objects cannot exceed n/40: compare rows within a bin, not across bins. "
                 "A fused model that loses AP when the camera is removed relies on the image; one that does not may be ignoring it. "
                 "Compare with a `--set model.fusion.name=lidar_only` run for the LiDAR-only baseline.")
    return "\n".join(lines), rows
