"""2D BEV backbone (two down-sampling stages, SECOND-FPN style merge) and the CenterPoint-style head."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mmapps_domains.driving.camera_fusion import conv_bn

REG_CHANNELS = 8  # offset x, offset y, z, log l, log w, log h, sin heading, cos heading


class BEVBackbone(nn.Module):
    """(B, Cin, ny, nx) -> (B, out_channels, ny / 2, nx / 2)."""

    def __init__(self, in_channels: int, channels: tuple[int, int], out_channels: int) -> None:
        super().__init__()
        c1, c2 = channels
        self.down1 = nn.Sequential(conv_bn(in_channels, c1, 2), conv_bn(c1, c1))
        self.down2 = nn.Sequential(conv_bn(c1, c2, 2), conv_bn(c2, c2), conv_bn(c2, c2))
        self.up2 = nn.Sequential(nn.ConvTranspose2d(c2, c1, 2, 2, bias=False), nn.BatchNorm2d(c1), nn.ReLU(inplace=True))
        self.merge = nn.Sequential(nn.Conv2d(2 * c1, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        x1 = self.down1(x)  # (B, c1, ny/2, nx/2)
        x2 = self.down2(x1)  # (B, c2, ny/4, nx/4)
        return self.merge(torch.cat([x1, self.up2(x2)], dim=1))


class CenterHead(nn.Module):
    """Per-class centre heatmap logits (B, K, H, W) and box regression (B, 8, H, W)."""

    def __init__(self, in_channels: int, num_classes: int, channels: int) -> None:
        super().__init__()
        self.shared = conv_bn(in_channels, channels)
        self.heatmap = nn.Conv2d(channels, num_classes, 1)
        self.regression = nn.Conv2d(channels, REG_CHANNELS, 1)
        nn.init.constant_(self.heatmap.bias, -math.log((1 - 0.1) / 0.1))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.shared(x)
        return self.heatmap(x), self.regression(x)
