"""Losses of the ``events`` task: per-window BCE (supervised) and MIL ranking (weakly supervised).

Both are always declared; each applies to the samples it fits, so one run may mix the regimes:
BCE to windows with known labels (NaN = unknown is masked), MIL to clips whose windows are all
unknown (the weak regime), using their clip labels (``batch.targets["clip"]``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def padded_targets(targets: Any, shape: torch.Size, device: torch.device) -> Tensor:
    """Stack ragged per-clip targets (W_i, C) into (B, T, C), NaN-padded (padding is never a label)."""
    if isinstance(targets, Tensor) and targets.shape == shape:
        return targets.to(device).float()
    out = torch.full(shape, float("nan"), device=device)
    for b, t in enumerate(targets):
        t = torch.as_tensor(t, dtype=torch.float32, device=device)
        out[b, : t.shape[0]] = t[: shape[1]]
    return out


def window_mask(batch: Any, T: int, device: torch.device) -> Tensor:
    """(B, T) bool: True for each clip's real windows (from ``meta["window_starts"]``)."""
    lengths = torch.tensor([len(m.get("window_starts", range(T))) for m in batch.meta], device=device)
    return torch.arange(T, device=device).unsqueeze(0) < lengths.unsqueeze(1)


def window_bce(logits: Tensor, targets: Any, batch: Any) -> Tensor:
    """Mean BCE over windows with known labels; 0 (with a graph) when none is known.

    Inputs:
        logits: (B, T, C) per-window logits; targets: (B, T, C) or ragged list of (W_i, C).
    """
    y = padded_targets(targets, logits.shape, logits.device)
    known = ~torch.isnan(y)
    if not known.any():
        return logits.sum() * 0.0
    return torch.nn.functional.binary_cross_entropy_with_logits(logits[known].float(), y[known])


def mil_ranking(logits: Tensor, targets: Any, batch: Any, smooth: float = 8e-5, sparse: float = 8e-5, margin: float = 1.0) -> Tensor:
    """Sultani et al. (2018) MIL ranking loss with temporal smoothness and sparsity, per class.

    For every class c, each (positive clip, negative clip) pair of the weakly labelled clips in the
    batch contributes ``max(0, margin - max_t s_pos + max_t s_neg)``, where s are window scores
    (sigmoid of logits; a clip is negative for c when its clip label for c is 0). Each positive clip
    adds ``smooth * sum_t (s_t - s_{t+1})^2 + sparse * sum_t s_t``. Returns 0 when no pair exists.

    Inputs:
        logits: (B, T, C); targets: events targets (NaN rows mark weak clips);
        batch.targets["clip"]: (B, C) clip labels.
    """
    y = padded_targets(targets, logits.shape, logits.device)
    weak = torch.isnan(y).all(dim=(1, 2))  # (B,)
    if "clip" not in batch.targets or weak.sum() < 2:
        return logits.sum() * 0.0
    clip = torch.as_tensor(batch.targets["clip"], dtype=torch.float32, device=logits.device)  # (B, C)
    valid = window_mask(batch, logits.shape[1], logits.device)  # (B, T)
    scores = torch.sigmoid(logits.float())  # (B, T, C)
    top = scores.masked_fill(~valid.unsqueeze(-1), -1.0).amax(1)  # (B, C)
    total, terms = logits.sum() * 0.0, 0
    for c in range(logits.shape[2]):
        pos = weak & (clip[:, c] > 0.5)
        neg = weak & (clip[:, c] < 0.5)
        if not pos.any() or not neg.any():
            continue
        hinge = torch.relu(margin - top[pos, c].unsqueeze(1) + top[neg, c].unsqueeze(0))  # (P, N)
        s = scores[pos, :, c].masked_fill(~valid[pos], 0.0)  # (P, T)
        pair_valid = (valid[pos, 1:] & valid[pos, :-1]).float()
        smooth_term = ((s[:, 1:] - s[:, :-1]) ** 2 * pair_valid).sum(1).mean()
        total = total + hinge.mean() + smooth * smooth_term + sparse * s.sum(1).mean()
        terms += 1
    return total / max(terms, 1)
