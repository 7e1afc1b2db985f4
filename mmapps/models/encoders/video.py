"""Video encoder: a per-frame CNN followed by a temporal convolution, one token per frame (or window)."""

from __future__ import annotations

import torch
from torch import nn

from mmapps.data.sample import ModalityBatch
from mmapps.models.encoders.image import build_image_trunk
from mmapps.models.pooling import masked_mean
from mmapps.models.types import EncoderOutput
from mmapps.registry import ENCODERS


@ENCODERS.register("video_cnn")
class VideoCnnEncoder(nn.Module):
    """Frames -> tokens.

    Inputs ``(B, F, C, H, W)`` give one token per frame; inputs ``(B, W, F, C, H, W)`` (frames
    sampled inside each time window) give one token per window, aligned with other windowed modalities.

    Args:
        dim: output width.
        backbone: frame CNN (see `build_image_trunk`), ``small_cnn`` by default.
        in_channels: 3 for RGB.
        temporal_kernel: kernel of the temporal convolution (odd).
        causal: pad the temporal convolution on the past side only (streaming).
        width: ``small_cnn`` width.
    """

    def __init__(self, dim: int, backbone: str = "small_cnn", in_channels: int = 3, temporal_kernel: int = 3, causal: bool = False, width: int = 16) -> None:
        super().__init__()
        self.trunk, trunk_dim = build_image_trunk(backbone, in_channels, width)
        self.frame_proj = nn.Linear(trunk_dim, dim)
        self.causal = causal
        self.kernel = temporal_kernel
        self.temporal = nn.Conv1d(dim, dim, temporal_kernel)
        self.out_dim = dim

    def _temporal(self, x: torch.Tensor) -> torch.Tensor:
        """(N, T, D) -> (N, T, D) with a residual temporal convolution."""
        pad = (self.kernel - 1, 0) if self.causal else ((self.kernel - 1) // 2, self.kernel // 2)
        y = self.temporal(nn.functional.pad(x.transpose(1, 2), pad))  # (N, D, T)
        return x + torch.relu(y.transpose(1, 2))

    def forward(self, mb: ModalityBatch) -> EncoderOutput:
        video = mb.data.float()
        windowed = video.dim() == 6
        if windowed:
            B, W, F = video.shape[:3]
            frames = video.flatten(0, 2)  # (B*W*F, C, H, W)
        else:
            B, F = video.shape[:2]
            W = 1
            frames = video.flatten(0, 1)  # (B*F, C, H, W)
        feats = self.frame_proj(self.trunk(frames).mean((2, 3)))  # (N_frames, D)
        feats = self._temporal(feats.view(B * W, F, -1))  # (B*W, F, D)
        if windowed:
            tokens = feats.mean(1).view(B, W, -1)  # (B, W, D)
            time_len = W
        else:
            tokens = feats.view(B, F, -1)  # (B, F, D)
            time_len = F
        mask = mb.mask if mb.mask is not None else torch.ones(B, time_len, dtype=torch.bool, device=video.device)
        token_mask = mask & mb.present.unsqueeze(1)
        return EncoderOutput(tokens, token_mask, masked_mean(tokens, token_mask))
