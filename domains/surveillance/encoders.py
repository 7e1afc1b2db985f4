"""The surveillance domain's encoder: per-window log-mel -> small CNN -> one token per window.

Video uses the core ``video_cnn`` (windowed input (B, W, F, C, H, W)); chat and pre-extracted
features use the core ``features_mlp`` over their per-window vectors.
"""

from __future__ import annotations

import torch
from torch import nn

from mmapps.data.sample import ModalityBatch
from mmapps.models.pooling import masked_mean
from mmapps.models.types import EncoderOutput
from mmapps.registry import ENCODERS


@ENCODERS.register("window_logmel_cnn")
class WindowLogMelEncoder(nn.Module):
    """Cached per-window log-mels (B, W, n_mels, T) -> tokens (B, W, D), each window on its own.

    Windows are encoded independently (no context across windows), so streaming inference
    produces the same tokens as whole-clip inference; temporal context comes from the fusion.

    Args:
        dim: output width.
        width: CNN channel width.
    """

    def __init__(self, dim: int, width: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for out in (width, width * 2, width * 4):
            layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1), nn.GroupNorm(1, out), nn.GELU()]
            channels = out
        self.cnn = nn.Sequential(*layers)
        self.proj = nn.Linear(2 * channels, dim)
        self.out_dim = dim

    def forward(self, mb: ModalityBatch) -> EncoderOutput:
        mel = mb.data.float()
        B, W = mel.shape[:2]
        fmap = self.cnn(mel.flatten(0, 1).unsqueeze(1))  # (B*W, C, M', T')
        pooled = torch.cat([fmap.mean((2, 3)), fmap.amax((2, 3))], dim=1)  # (B*W, 2C)
        tokens = self.proj(pooled).view(B, W, -1)  # (B, W, D)
        mask = mb.mask if mb.mask is not None else torch.ones(B, W, dtype=torch.bool, device=mel.device)
        token_mask = mask & mb.present.unsqueeze(1)
        return EncoderOutput(tokens, token_mask, masked_mean(tokens, token_mask))


def setup() -> None:
    """Called by the core before building a model: registers this module's encoder.

    Registering again is a no-op for the same class; it restores the entry if the registry was
    replaced after this module was imported (a test that swaps the registry's entries).
    """
    ENCODERS.register("window_logmel_cnn", WindowLogMelEncoder)
