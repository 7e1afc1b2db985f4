"""Gated multimodal unit (GMU, Arevalo et al. 2017): a learned, input-dependent convex mix of modalities."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmapps.models.types import EncoderOutput, FusionOutput
from mmapps.registry import FUSIONS


@FUSIONS.register("gated")
class GatedFusion(nn.Module):
    """``h_m = tanh(W_m x_m)``; ``z = softmax_m(G [x_1..x_M])`` over present modalities; ``out = sum z_m h_m``.

    Args:
        modality_to_dim: input width per modality.
        dim: output width.
    """

    level = "features"

    def __init__(self, modality_to_dim: dict[str, int], dim: int) -> None:
        super().__init__()
        self.modalities = sorted(modality_to_dim)
        self.transforms = nn.ModuleDict({m: nn.Linear(modality_to_dim[m], dim) for m in self.modalities})
        self.gate = nn.Linear(sum(modality_to_dim.values()), len(self.modalities))
        self.out_dim = dim

    def forward(self, features: dict[str, EncoderOutput], present: dict[str, Tensor]) -> FusionOutput:
        mask = torch.stack([present[m] for m in self.modalities], dim=1)  # (B, M)
        inputs = [features[m].pooled * present[m].unsqueeze(-1).to(features[m].pooled.dtype) for m in self.modalities]
        hidden = torch.stack([torch.tanh(self.transforms[m](x)) for m, x in zip(self.modalities, inputs)], dim=1)  # (B, M, D)
        gate_logits = self.gate(torch.cat(inputs, dim=-1)).masked_fill(~mask, float("-inf"))  # (B, M)
        gates = torch.nan_to_num(torch.softmax(gate_logits, dim=1), nan=0.0)
        return FusionOutput((hidden * gates.unsqueeze(-1).to(hidden.dtype)).sum(1))  # (B, D)
