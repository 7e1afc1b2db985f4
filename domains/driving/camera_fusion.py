"""Camera features and the two ways of bringing them to the LiDAR detector.

- painting (MVX-Net PointFusion style): each point is projected into the image and the learned
  image-CNN feature at that pixel is appended to the point's pillar features.
- bev (OFT / ContFuse style): each BEV cell is projected into the image at a few heights; the
  sampled features (averaged over the heights that land in the image) form extra BEV channels.

Points or cells that fall outside the image, and samples without a camera, get zeros and a 0
validity flag, so a frame without its image still gets (LiDAR-only) detections.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ImageFeatureNet(nn.Module):
    """A small CNN trained from scratch (no pretrained weights are available offline): (B, 3, H, W) -> (B, C, H/4, W/4)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(conv_bn(3, 16, 2), conv_bn(16, 16), conv_bn(16, channels, 2), conv_bn(channels, channels))
        self.out_channels = channels

    def forward(self, image: Tensor) -> Tensor:
        return self.net(image)


def sample_features(feature_map: Tensor, batch_index: Tensor, uv: Tensor, image_hw: tuple[int, int]) -> Tensor:
    """Bilinear features at pixel positions, gathered without a loop over samples.

    Args:
        feature_map: (B, C, h, w) features of images of size `image_hw` (H, W).
        batch_index: (K,) sample of each query.
        uv: (K, 2) pixel coordinates in the (H, W) image.

    Returns:
        (K, C) features (zero outside the map).
    """
    b, c, h, w = feature_map.shape
    flat = feature_map.permute(0, 2, 3, 1).reshape(b * h * w, c)  # (B*h*w, C)
    x = uv[:, 0] * (w / image_hw[1]) - 0.5
    y = uv[:, 1] * (h / image_hw[0]) - 0.5
    x0, y0 = torch.floor(x), torch.floor(y)
    out = feature_map.new_zeros(uv.shape[0], c)
    for dx in (0, 1):
        for dy in (0, 1):
            xi, yi = x0 + dx, y0 + dy
            weight = (1 - (x - xi).abs()) * (1 - (y - yi).abs())
            inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
            idx = (batch_index * h + yi.clamp(0, h - 1).long()) * w + xi.clamp(0, w - 1).long()
            out = out + flat[idx] * (weight * inside)[:, None]
    return out


def project(points: Tensor, lidar_to_image: Tensor, batch_index: Tensor, image_hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Project LiDAR points (K, 3) with per-sample (B, 3, 4) matrices; returns uv (K, 2) and a validity mask (K,)."""
    with torch.autocast(device_type=points.device.type, enabled=False):  # pixel coordinates need fp32, not bf16
        m = lidar_to_image.float()[batch_index]  # (K, 3, 4)
        uvw = torch.einsum("kij,kj->ki", m[:, :, :3], points.float()) + m[:, :, 3]
    depth = uvw[:, 2]
    uv = uvw[:, :2] / depth.clamp(min=1e-3)[:, None]
    valid = (depth > 0.1) & (uv[:, 0] >= 0) & (uv[:, 0] < image_hw[1]) & (uv[:, 1] >= 0) & (uv[:, 1] < image_hw[0])
    return uv, valid


def paint_points(points: Tensor, batch_index: Tensor, feature_map: Tensor, lidar_to_image: Tensor, present: Tensor, image_hw: tuple[int, int]) -> Tensor:
    """Image features (K, C + 1) for points (K, >=3): sampled features and a validity flag."""
    uv, valid = project(points[:, :3], lidar_to_image, batch_index, image_hw)
    valid = valid & present[batch_index]
    feats = sample_features(feature_map, batch_index, uv, image_hw) * valid[:, None]
    return torch.cat([feats, valid[:, None].to(feats.dtype)], dim=1)


def bev_image_features(feature_map: Tensor, lidar_to_image: Tensor, present: Tensor, image_hw: tuple[int, int],
                       grid: tuple[int, int], x_min: float, y_min: float, cell: float, heights: tuple[float, ...]) -> Tensor:
    """Image features at the projections of BEV cell centres: (B, C + 1, ny, nx), last channel = share of valid heights."""
    b = feature_map.shape[0]
    ny, nx = grid
    ys = (torch.arange(ny, device=feature_map.device, dtype=feature_map.dtype) + 0.5) * cell + y_min
    xs = (torch.arange(nx, device=feature_map.device, dtype=feature_map.dtype) + 0.5) * cell + x_min
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    total = feature_map.new_zeros(b * ny * nx, feature_map.shape[1])
    count = feature_map.new_zeros(b * ny * nx)
    batch_index = torch.arange(b, device=feature_map.device).repeat_interleave(ny * nx)
    for z in heights:  # a few heights, each a vectorised projection of all cells of all samples
        pts = torch.stack([gx.reshape(-1), gy.reshape(-1), torch.full_like(gx.reshape(-1), z)], 1).repeat(b, 1)  # (B*ny*nx, 3)
        uv, valid = project(pts, lidar_to_image, batch_index, image_hw)
        valid = valid & present[batch_index]
        total = total + sample_features(feature_map, batch_index, uv, image_hw) * valid[:, None]
        count = count + valid.to(total.dtype)
    mean = total / count.clamp(min=1)[:, None]
    out = torch.cat([mean, (count / len(heights))[:, None]], dim=1)  # (B*ny*nx, C + 1)
    return out.view(b, ny, nx, -1).permute(0, 3, 1, 2).contiguous()
