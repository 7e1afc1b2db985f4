"""What encoders and fusions return."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class EncoderOutput(NamedTuple):
    """An encoder's view of one modality.

    Attributes:
        tokens: (B, T, D) token features (image patches, words, time windows, points...).
        token_mask: (B, T) bool, True for real tokens.
        pooled: (B, D) one vector per sample (masked mean of tokens unless the encoder knows better).
        feature_map: (B, C, H, W) spatial features for domains that fuse in space, else None.
    """

    tokens: Tensor
    token_mask: Tensor
    pooled: Tensor
    feature_map: Tensor | None = None


class FusionOutput(NamedTuple):
    """A fusion's joint representation.

    Attributes:
        pooled: (B, D) for sample-level heads, or (B, T, D) when fusing per time step.
        tokens: (B, T, D) fused tokens when the fusion produces them (attention), else None.
        token_mask: (B, T) bool for `tokens`, else None.
    """

    pooled: Tensor
    tokens: Tensor | None = None
    token_mask: Tensor | None = None
