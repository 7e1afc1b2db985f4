"""Early fusion: concatenate pooled modality vectors (absent ones zeroed and flagged) and project."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmapps.models.types import EncoderOutput, FusionOutput
from mmapps.registry import FUSIONS


@FUSIONS.register("concat")
class ConcatFusion(nn.Module):
    """``[x_1 * p_1, ..., x_M * p_M, p_1..p_M] -> Linear -> GELU -> Linear``.

    An absent modality's slot is zero and its presence flag is 0, so it adds nothing to the
    first linear layer except through the learned flag weight: it is never passed as real data.

    Args:
        modality_to_dim: input width per modality.
        dim: output width.
        dropout: dropout after the first layer.
    """

    level = "features"

    def __init__(self, modality_to_dim: dict[str, int], dim: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.modalities = sorted(modality_to_dim)
        total = sum(modality_to_dim.values()) + len(self.modalities)
        self.mlp = nn.Sequential(nn.Linear(total, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, dim))
        self.out_dim = dim

    def forward(self, features: dict[str, EncoderOutput], present: dict[str, Tensor]) -> FusionOutput:
        parts, flags = [], []
        for m in self.modalities:
            p = present[m].to(features[m].pooled.dtype).unsqueeze(-1)  # (B, 1)
            parts.append(features[m].pooled * p)
            flags.append(p)
        return FusionOutput(self.mlp(torch.cat(parts + flags, dim=-1)))  # (B, D)
