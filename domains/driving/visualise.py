"""PNG figures: precision-recall curves, bird's-eye views and camera images with 3D boxes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from mmapps_domains.driving.geometry import box_corners_camera, bev_corners, boxes_camera_to_lidar, project_to_image


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_pr_curves(curves: dict[tuple[str, str, str], dict[str, np.ndarray]], classes: Sequence[str], path: Path) -> Path:
    """One panel per metric (bbox, bev, 3d): interpolated precision vs recall, a line per class and level."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    styles = {"easy": ":", "moderate": "-", "hard": "--"}
    for ax, metric in zip(axes, ("bbox", "bev", "3d")):
        for ci, cls in enumerate(classes):
            for level, style in styles.items():
                curve = curves.get((metric, cls, level))
                if curve is None:
                    continue
                n = int(np.count_nonzero(curve["recall"]))
                ax.plot(curve["recall"][:n], curve["precision"][:n], style, color=f"C{ci}", label=f"{cls} {level}")
        ax.set(title=f"{metric} precision-recall", xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def gt_lidar_boxes(kitti: dict[str, Any], calib: dict[str, Any]) -> tuple[np.ndarray, list[str]]:
    """Ground-truth label columns -> LiDAR boxes (M, 7) and names (DontCare dropped)."""
    names = list(kitti["name"])
    keep = [i for i, n in enumerate(names) if n != "DontCare"]
    if not keep:
        return np.zeros((0, 7)), []
    lhw = np.asarray(kitti["dimensions"], dtype=np.float64)[keep]
    cam = np.concatenate([np.asarray(kitti["location"], dtype=np.float64)[keep], lhw[:, [1, 2, 0]], np.asarray(kitti["rotation_y"], dtype=np.float64)[keep, None]], 1)
    boxes = boxes_camera_to_lidar(torch.from_numpy(cam), torch.tensor(calib["R0_rect"], dtype=torch.float64), torch.tensor(calib["Tr_velo_to_cam"], dtype=torch.float64))
    return boxes.numpy(), [names[i] for i in keep]


def plot_bev(points: np.ndarray, gt: np.ndarray, pred: np.ndarray, pred_scores: Sequence[float], point_range: Sequence[float], path: Path, title: str) -> Path:
    """Top view: points (grey), ground truth (green) and detections (red, score-labelled)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.scatter(points[:, 1], points[:, 0], s=0.2, c="0.5")
    for boxes, colour in ((gt, "g"), (pred, "r")):
        if len(boxes):
            corners = bev_corners(torch.as_tensor(np.asarray(boxes), dtype=torch.float64)).numpy()
            for c in corners:
                loop = np.vstack([c, c[:1]])
                ax.plot(loop[:, 1], loop[:, 0], colour, lw=1)
    for box, score in zip(pred, pred_scores):
        ax.text(box[1], box[0], f"{score:.2f}", color="r", fontsize=6)
    ax.set(xlim=(point_range[4], point_range[1]), ylim=(point_range[0], point_range[3]), xlabel="y (m, left positive)", ylabel="x (m)", title=title)
    ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def draw_boxes_on_image(image: np.ndarray, boxes_camera: np.ndarray, p2: np.ndarray, colour: tuple[int, int, int], labels: Sequence[str] = ()) -> np.ndarray:
    """Draw the 12 edges of camera-frame 3D boxes (N, 7) projected with P2 onto an RGB image."""
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(image.copy())
    draw = ImageDraw.Draw(canvas)
    if len(boxes_camera):
        corners = box_corners_camera(torch.as_tensor(np.asarray(boxes_camera), dtype=torch.float64))
        for i, c in enumerate(corners):
            if (c[:, 2] < 0.5).any():
                continue
            uv, _ = project_to_image(c, torch.as_tensor(p2, dtype=torch.float64))
            uv = uv.numpy()
            for a, b in ((0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7)):
                draw.line([tuple(uv[a]), tuple(uv[b])], fill=colour, width=2)
            if i < len(labels):
                draw.text(tuple(uv[4]), labels[i], fill=colour)
    return np.asarray(canvas)
