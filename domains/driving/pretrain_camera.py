"""SparK-style masked image modelling for the driving camera CNN (`ImageFeatureNet`).

The camera CNN is the domain's own (not a core image encoder), so its mask unit is declared
here: square patches of ``patch`` pixels (a multiple of the CNN's stride 4; at stride 4 a hidden
unit would be filled in by interpolation). The CNN runs through the core's sparse-trunk
emulation (`mmapps.pretrain.image.sparse_trunk`): hidden pixels are zeroed, every layer's output
is re-masked at its resolution and batch normalisation takes statistics over visible units only,
so nothing of a hidden patch reaches a visible feature. The target is each hidden patch's pixels
normalised per patch (MAE's norm-pix); a light convolutional decoder fills hidden units with a
learned mask token and predicts pixels (pixel shuffle x4), as a residual over the pool's mean
patch at each position (the objective's `PositionPrior`; the decoder's last layer starts at zero,
so the pretraining starts at the per-position mean predictor).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mmapps_domains.driving.camera_fusion import ImageFeatureNet, conv_bn
from mmapps.pretrain.image import sparse_trunk
from mmapps.pretrain.masking import upsample_units


def masked_image_features(net: ImageFeatureNet, image: Tensor, visible: Tensor) -> Tensor:
    """`net` on `image` (B, 3, H, W) with hidden patches never read; visible (B, gh, gw) bool.

    Returns the (B, C, H/4, W/4) feature map, zero at hidden units.
    """
    pixels = upsample_units(visible, image.shape[-2:])  # (B, 1, H, W)
    with sparse_trunk(net.net, visible.float()):
        return net(image.float() * pixels)


class CameraDecoder(nn.Module):
    """Stride-4 feature map with a learned mask token at hidden units -> pixels (B, 3, 4h, 4w)."""

    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        self.mask_token = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.body = nn.Sequential(conv_bn(channels, width), conv_bn(width, width))
        self.out = nn.Conv2d(width, 3 * 16, 1)
        nn.init.zeros_(self.out.weight)  # start at the position prior alone
        nn.init.zeros_(self.out.bias)

    def forward(self, features: Tensor, visible: Tensor) -> Tensor:
        """Inputs: features (B, C, h, w), visible (B, gh, gw) bool patch mask."""
        keep = F.interpolate(visible.unsqueeze(1).float(), size=features.shape[-2:], mode="nearest").to(features.dtype)  # (B, 1, h, w)
        x = features * keep + self.mask_token.to(features.dtype) * (1 - keep)
        return F.pixel_shuffle(self.out(self.body(x)), 4)


def patch_values(image: Tensor, patch: int) -> tuple[Tensor, Tensor, Tensor]:
    """Normalised patches (B, U, 3 * p * p) (channel-major, as `F.unfold`) and their mean and variance (B, U, 1)."""
    patches = F.unfold(image.float(), kernel_size=patch, stride=patch).transpose(1, 2)  # (B, U, 3*p*p)
    mean, var = patches.mean(-1, keepdim=True), patches.var(-1, keepdim=True, unbiased=False)
    return (patches - mean) / torch.sqrt(var + 1e-6), mean, var


def pixels_to_patches(pixels: Tensor, patch: int) -> Tensor:
    """(B, 3, H, W) -> (B, U, 3 * p * p) in the layout of `patch_values`."""
    return F.unfold(pixels, kernel_size=patch, stride=patch).transpose(1, 2)
