"""Pillar feature net: per-point MLP, max over each pillar, scattered to a BEV pseudo-image."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmapps_domains.driving.preprocess import Pillars


class PillarFeatureNet(nn.Module):
    """PointPillars' PFN with one linear layer (as in the paper) and a vectorised scatter.

    Args:
        in_channels: per-point feature width (9 for plain pillars, more when points are painted).
        out_channels: pillar feature width C.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_channels, out_channels, bias=False)
        self.norm = nn.BatchNorm1d(out_channels)
        self.out_channels = out_channels

    def forward(self, point_features: Tensor, pillars: Pillars, batch_size: int, grid: tuple[int, int]) -> Tensor:
        """Inputs: point features (P, F), their `Pillars`; returns the pseudo-image (B, C, ny, nx)."""
        ny, nx = grid
        x = torch.relu(self.norm(self.linear(point_features)))  # (P, C)
        n_pillars = pillars.coords.shape[0]
        pooled = x.new_full((n_pillars, x.shape[1]), float("-inf")).scatter_reduce(
            0, pillars.pillar_of_point[:, None].expand_as(x), x, reduce="amax", include_self=True)  # (Q, C)
        canvas = x.new_zeros(batch_size * ny * nx, x.shape[1])
        flat = (pillars.coords[:, 0] * ny + pillars.coords[:, 1]) * nx + pillars.coords[:, 2]
        canvas = canvas.index_copy(0, flat, pooled)
        return canvas.view(batch_size, ny, nx, -1).permute(0, 3, 1, 2).contiguous()  # (B, C, ny, nx)
