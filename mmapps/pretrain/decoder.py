"""The light per-modality decoder: mask queries attend to the fused visible tokens of every modality."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmapps.models.fusions.attention import sinusoidal_positions
from mmapps.models.fusions.sdpa_layer import SdpaEncoder
from mmapps.pretrain.contract import FusedContext


class UnitDecoder(nn.Module):
    """A few transformer layers over ``[context tokens ; one query per unit]`` -> per-unit predictions.

    Context tokens get a (decoder) modality embedding and the sinusoidal position of their unit;
    each query is a learned mask token plus its unit's position and this modality's embedding.
    Queries are read out, so hidden units are predicted from every modality's visible tokens.

    Args:
        context_dim: width of the fused tokens.
        dim: decoder width.
        out_dim: P, target values per unit.
        modalities: all modality names (sorted) of the context.
        modality: the one this decoder reconstructs.
        layers, heads: transformer size.
    """

    def __init__(self, context_dim: int, dim: int, out_dim: int, modalities: tuple[str, ...], modality: str, layers: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.index = list(modalities).index(modality)
        self.in_proj = nn.Linear(context_dim, dim)
        self.modality_embedding = nn.Parameter(torch.randn(len(modalities), dim) * 0.02)
        self.mask_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        heads = heads if dim % heads == 0 else 1
        self.transformer = SdpaEncoder(layers, dim, heads, ffn_dim=2 * dim, dropout=0.0)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, out_dim)
        nn.init.zeros_(self.head.weight)  # start at a constant prediction: the trivial predictor once the bias is the pool mean
        nn.init.zeros_(self.head.bias)
        self.dim = dim

    def forward(self, context: FusedContext, units: int) -> Tensor:
        """Returns the hidden states of the `units` queries (B, U, dim); `predict` maps them to targets."""
        B, N = context.keep.shape
        table = sinusoidal_positions(max(units, context.span, 1), self.dim, context.tokens.device)  # (span, dim)
        pos = table[context.positions.clamp_min(0)] * (context.positions >= 0).unsqueeze(-1)  # (B, N, dim)
        ctx = self.in_proj(context.tokens) + self.modality_embedding[context.modality] + pos  # (B, N, dim)
        queries = self.mask_token + self.modality_embedding[self.index] + table[:units]  # (1, U, dim)
        x = torch.cat([ctx, queries.expand(B, -1, -1).to(ctx.dtype)], dim=1)  # (B, N + U, dim)
        keep = torch.cat([context.keep, torch.ones(B, units, dtype=torch.bool, device=x.device)], dim=1)
        out = self.transformer(x, keep.view(B, 1, 1, -1))
        return self.norm(out[:, N:])  # (B, U, dim)

    def predict(self, context: FusedContext, units: int) -> Tensor:
        return self.head(self(context, units))  # (B, U, P)
