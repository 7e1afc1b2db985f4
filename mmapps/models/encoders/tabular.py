"""Tabular MLP encoder, a pre-extracted-features encoder, and the identity encoder used in goldens."""

from __future__ import annotations

import torch
from torch import nn

from mmapps.data.sample import ModalityBatch
from mmapps.models.pooling import masked_mean
from mmapps.models.types import EncoderOutput
from mmapps.registry import ENCODERS


@ENCODERS.register("tabular_mlp")
class TabularMlpEncoder(nn.Module):
    """Fixed ``(B, F)`` feature vectors -> one token. NaN features are set to 0 and flagged.

    Args:
        dim: output width.
        in_features: number of columns.
        hidden: hidden width.
    """

    def __init__(self, dim: int, in_features: int, hidden: int = 64) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * in_features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, dim))
        self.out_dim = dim

    def forward(self, mb: ModalityBatch) -> EncoderOutput:
        x = mb.data.float()
        missing = torch.isnan(x)
        x = torch.cat([torch.nan_to_num(x), missing.float()], dim=1)  # (B, 2F)
        pooled = self.mlp(x)  # (B, D)
        token_mask = mb.present.unsqueeze(1)
        return EncoderOutput(pooled.unsqueeze(1), token_mask, pooled)


@ENCODERS.register("features_mlp")
class FeaturesMlpEncoder(nn.Module):
    """Pre-extracted features (I3D, VGGish, CLIP...) ``(B, T, F)`` padded -> tokens ``(B, T, D)``.

    Args:
        dim: output width.
        in_features: feature width on disk.
    """

    def __init__(self, dim: int, in_features: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.LayerNorm(in_features), nn.Linear(in_features, dim))
        self.out_dim = dim

    def forward(self, mb: ModalityBatch) -> EncoderOutput:
        x = mb.data.float()
        x = x.unsqueeze(1) if x.dim() == 2 else x  # (B, T, F)
        tokens = self.proj(x)  # (B, T, D)
        mask = mb.mask if mb.mask is not None else torch.ones(tokens.shape[:2], dtype=torch.bool, device=x.device)
        token_mask = mask & mb.present.unsqueeze(1)
        return EncoderOutput(tokens, token_mask, masked_mean(tokens, token_mask))


@ENCODERS.register("identity")
class IdentityEncoder(nn.Module):
    """Passes ``(B, D)`` or ``(B, T, D)`` features through unchanged (goldens and tests)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.out_dim = dim

    def forward(self, mb: ModalityBatch) -> EncoderOutput:
        x = mb.data.float()
        tokens = x.unsqueeze(1) if x.dim() == 2 else x  # (B, T, D)
        mask = mb.mask if mb.mask is not None else torch.ones(tokens.shape[:2], dtype=torch.bool, device=x.device)
        token_mask = mask & mb.present.unsqueeze(1)
        return EncoderOutput(tokens, token_mask, masked_mean(tokens, token_mask))
