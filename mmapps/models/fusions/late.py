"""Late fusion: a learned weighted average of per-modality predictions over the present modalities."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmapps.registry import FUSIONS


@FUSIONS.register("late")
class LateFusion(nn.Module):
    """Each modality has its own head; their outputs are averaged with softmax weights.

    The model builder gives every modality its own copy of each task head (``level ==
    "predictions"``); this module then combines the per-modality predictions of one task.
    Weights are renormalised over the modalities present in each sample.

    Args:
        modality_to_dim: input width per modality (only the names matter here).
        dim: unused (kept for a uniform constructor).
    """

    level = "predictions"

    def __init__(self, modality_to_dim: dict[str, int], dim: int) -> None:
        super().__init__()
        self.modalities = sorted(modality_to_dim)
        self.weight_logits = nn.Parameter(torch.zeros(len(self.modalities)))
        self.out_dim = dim

    def forward(self, predictions: dict[str, Tensor], present: dict[str, Tensor]) -> Tensor:
        """Combine per-modality predictions (B, ...) into one (B, ...)."""
        stacked = torch.stack([predictions[m] for m in self.modalities], dim=1)  # (B, M, ...)
        mask = torch.stack([present[m] for m in self.modalities], dim=1)  # (B, M) or (B, M, T)
        logits = self.weight_logits.view(1, -1, *([1] * (mask.dim() - 2))).expand(mask.shape)
        weights = torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=1)
        weights = torch.nan_to_num(weights, nan=0.0)  # a sample with no modality present predicts 0
        while weights.dim() < stacked.dim():
            weights = weights.unsqueeze(-1)
        return (stacked * weights.to(stacked.dtype)).sum(1)

    def modality_weights(self) -> dict[str, float]:
        """The learned weights when every modality is present (for reports)."""
        return dict(zip(self.modalities, torch.softmax(self.weight_logits.detach(), 0).tolist()))
