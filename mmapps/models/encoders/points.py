"""Point cloud encoder: PointNet (shared per-point MLP + per-cloud max pool) over packed clouds."""

from __future__ import annotations

import torch
from torch import nn

from mmapps.data.sample import ModalityBatch
from mmapps.models.pooling import segment_max
from mmapps.models.types import EncoderOutput
from mmapps.registry import ENCODERS


@ENCODERS.register("pointnet")
class PointNetEncoder(nn.Module):
    """Packed points ``(sum N, F)`` with ``offsets`` -> one token per cloud.

    Args:
        dim: output width.
        in_features: per-point features (x, y, z, intensity -> 4).
        hidden: widths of the shared MLP.
    """

    def __init__(self, dim: int, in_features: int = 4, hidden: tuple[int, ...] = (64, 128)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for out in hidden:
            layers += [nn.Linear(width, out), nn.LayerNorm(out), nn.ReLU(inplace=True)]
            width = out
        layers.append(nn.Linear(width, dim))
        self.mlp = nn.Sequential(*layers)
        self.out_dim = dim

    def forward(self, mb: ModalityBatch) -> EncoderOutput:
        assert mb.offsets is not None, "pointnet expects the packed layout"
        per_point = self.mlp(mb.data.float())  # (sum N, D)
        pooled = segment_max(per_point, mb.offsets) * mb.present.unsqueeze(1)  # (B, D)
        token_mask = mb.present.unsqueeze(1)  # (B, 1)
        return EncoderOutput(pooled.unsqueeze(1), token_mask, pooled)
