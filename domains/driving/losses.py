"""CenterPoint-style training targets and losses: Gaussian focal loss on heatmaps, L1 on box codes.

Loss contract of the core trainer: ``fn(outputs, targets, batch) -> Tensor`` with ``outputs`` the
model's ``"objects"`` dict and ``targets`` the collated list of per-frame ``{"boxes", "labels"}``.
Targets are built once per batch and cached in ``outputs`` so both losses share them.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor


class CenterTargets(NamedTuple):
    """heatmap (B, K, H, W); for each positive: batch, row, col (P,) and box codes (P, 8)."""

    heatmap: Tensor
    batch: Tensor
    row: Tensor
    col: Tensor
    codes: Tensor


def gaussian_radius(length: Tensor, width: Tensor, min_overlap: float = 0.1) -> Tensor:
    """CornerNet's radius (in cells) keeping IoU >= `min_overlap` for boxes of the given size, vectorised."""
    a1, b1, c1 = 1.0, length + width, width * length * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + torch.sqrt(b1 ** 2 - 4 * a1 * c1)) / 2
    a2, b2, c2 = 4.0, 2 * (length + width), (1 - min_overlap) * width * length
    r2 = (b2 + torch.sqrt(b2 ** 2 - 4 * a2 * c2)) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (length + width), (min_overlap - 1) * width * length
    r3 = (b3 + torch.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return torch.minimum(torch.minimum(r1, r2), r3)


def build_targets(outputs: dict[str, Any], targets: list[dict[str, Any]]) -> CenterTargets:
    """Draw Gaussian heatmaps (all boxes of a frame at once) and box codes at the centre cells."""
    heat_shape = outputs["heatmap"].shape
    b, k, h, w = heat_shape
    grid = outputs["grid"]
    device = outputs["heatmap"].device
    heatmap = torch.zeros(heat_shape, device=device)
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    rows, cols, bidx, codes = [], [], [], []
    for i, target in enumerate(targets):  # loop over frames of the batch; boxes are vectorised
        boxes = torch.as_tensor(target["boxes"], dtype=torch.float32, device=device).reshape(-1, 7)
        labels = torch.as_tensor(target["labels"], dtype=torch.long, device=device).reshape(-1)
        cx = (boxes[:, 0] - grid["x_min"]) / grid["cell"]
        cy = (boxes[:, 1] - grid["y_min"]) / grid["cell"]
        col, row = cx.floor().long(), cy.floor().long()
        inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
        boxes, labels, cx, cy, col, row = boxes[inside], labels[inside], cx[inside], cy[inside], col[inside], row[inside]
        if boxes.shape[0] == 0:
            continue
        radius = gaussian_radius(boxes[:, 3] / grid["cell"], boxes[:, 4] / grid["cell"]).clamp(min=2).floor()
        sigma = (2 * radius + 1) / 6
        d2 = (xs[None] - col[:, None, None]) ** 2 + (ys[None] - row[:, None, None]) ** 2  # (M, H, W)
        gauss = torch.exp(-d2 / (2 * sigma[:, None, None] ** 2))
        gauss = torch.where(d2 <= (radius[:, None, None] ** 2), gauss, torch.zeros_like(gauss))
        for c in labels.unique().tolist():  # per class present in the frame (a few)
            heatmap[i, c] = torch.maximum(heatmap[i, c], gauss[labels == c].amax(0))
        code = torch.stack([cx - col, cy - row, boxes[:, 2], boxes[:, 3].log(), boxes[:, 4].log(), boxes[:, 5].log(),
                            torch.sin(boxes[:, 6]), torch.cos(boxes[:, 6])], dim=1)
        rows.append(row), cols.append(col), codes.append(code), bidx.append(torch.full_like(row, i))
    if codes:
        return CenterTargets(heatmap, torch.cat(bidx), torch.cat(rows), torch.cat(cols), torch.cat(codes))
    empty = torch.zeros(0, dtype=torch.long, device=device)
    return CenterTargets(heatmap, empty, empty, empty, torch.zeros(0, 8, device=device))


def _cached_targets(outputs: dict[str, Any], targets: Any) -> CenterTargets:
    if "_targets" not in outputs:
        outputs["_targets"] = build_targets(outputs, list(targets))
    return outputs["_targets"]


def heatmap_focal_loss(outputs: dict[str, Any], targets: Any, batch: Any = None) -> Tensor:
    """CenterNet's penalty-reduced focal loss (alpha 2, beta 4), normalised by the number of centres."""
    t = _cached_targets(outputs, targets)
    logits = outputs["heatmap"].float()
    pred = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = t.heatmap.eq(1).float()
    neg_weight = (1 - t.heatmap) ** 4
    pos_loss = -(torch.log(pred) * (1 - pred) ** 2 * pos).sum()
    neg_loss = -(torch.log(1 - pred) * pred ** 2 * neg_weight * (1 - pos)).sum()
    return (pos_loss + neg_loss) / pos.sum().clamp(min=1)


def box_regression_loss(outputs: dict[str, Any], targets: Any, batch: Any = None) -> Tensor:
    """L1 loss on the 8 box codes at the centre cells (summed over codes, averaged over centres)."""
    t = _cached_targets(outputs, targets)
    reg = outputs["regression"].float()
    if t.codes.shape[0] == 0:
        return reg.sum() * 0.0
    pred = reg[t.batch, :, t.row, t.col]  # (P, 8)
    return (pred - t.codes).abs().sum(1).mean()
