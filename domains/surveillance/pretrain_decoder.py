"""The causal window decoder of surveillance pretraining.

Window t is reconstructed from the fused visible tokens of windows <= t + ``lookahead`` only, so
the objective never teaches the encoders and fusion to rely on the future: with the default
causal fusion (no look-ahead), a pretrained model streams through ``watch`` unchanged. The
optional next-window head predicts, from the decoder's output at t, the first window that output
has not seen (t + 1 + the decoder's and the fusion's look-ahead): a forecasting objective.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmapps.models.fusions.attention import sinusoidal_positions
from mmapps.models.fusions.sdpa_layer import SdpaEncoder
from mmapps.pretrain.contract import FusedContext


def windows_of_context(context: FusedContext, T: int) -> tuple[Tensor, Tensor]:
    """Mean fused token per window (B, T, D) and the number of visible tokens behind it (B, T).

    Works for per-modality tokens (T x M) and for per-time-step fused tokens (T) alike: tokens
    are grouped by their window position; tokens without one (-1) or beyond T are ignored.
    """
    tokens, keep, positions = context.tokens, context.keep, context.positions
    B, N, D = tokens.shape
    if positions.shape[1] != N:  # a per-time-step fusion's output: token n is window n
        positions = torch.arange(N, device=tokens.device).expand(B, N)
        keep = keep[:, :N] if keep.shape[1] >= N else torch.ones(B, N, dtype=torch.bool, device=tokens.device)
    valid = keep & (positions >= 0) & (positions < T)  # (B, N)
    index = positions.clamp(0, T - 1)
    weight = valid.to(tokens.dtype)
    sums = tokens.new_zeros(B, T, D).scatter_add_(1, index.unsqueeze(-1).expand(B, N, D), tokens * weight.unsqueeze(-1))
    counts = tokens.new_zeros(B, T).scatter_add_(1, index, weight)
    return sums / counts.clamp_min(1.0).unsqueeze(-1), counts


def causal_window_mask(real: Tensor, lookahead: int) -> Tensor:
    """(B, 1, T, T) bool: query window t may attend to key window s <= t + lookahead that is real (and to itself)."""
    B, T = real.shape
    t = torch.arange(T, device=real.device)
    allowed = t.view(1, T) <= t.view(T, 1) + lookahead  # (T, T): [query, key]
    return (allowed & (real.view(B, 1, T) | torch.eye(T, dtype=torch.bool, device=real.device))).unsqueeze(1)


class CausalWindowDecoder(nn.Module):
    """A light causal transformer over windows: fused tokens + "hidden here" marks -> per-window targets.

    The first layer looks ``lookahead`` windows ahead, the others none, so the output at t depends
    on fused tokens of windows <= t + lookahead whatever the depth.

    Args:
        dim: width of the fused tokens (and of the decoder).
        out_dim: values reconstructed per window.
        layers, heads: decoder transformer size.
        lookahead: windows of look-ahead of the decoder (0: window t sees windows <= t).
        next_window: add the next-window head (its prediction is concatenated after the reconstruction).
    """

    def __init__(self, dim: int, out_dim: int, layers: int = 1, heads: int = 4, lookahead: int = 0, next_window: bool = False) -> None:
        super().__init__()
        self.inp = nn.Linear(dim, dim)
        self.hidden_token = nn.Parameter(torch.zeros(dim))  # marks a window whose content is hidden for this modality
        self.empty_token = nn.Parameter(torch.zeros(dim))  # a window with no visible token of any modality
        self.transformer = SdpaEncoder(layers, dim, heads, ffn_dim=2 * dim, dropout=0.0)
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, out_dim)
        self.next_out = nn.Linear(dim, out_dim) if next_window else None
        self.lookahead = lookahead

    def forward(self, context: FusedContext, hidden: Tensor, real: Tensor) -> Tensor:
        """Inputs: the fused context; hidden and real (B, T) of this modality.

        Returns (B, T, P) reconstructions, or (B, T, 2P) with the next-window head, whose
        second half at t is the decoder's forecast made at t (the caller shifts it).
        """
        T = hidden.shape[1]
        step, counts = windows_of_context(context, T)  # (B, T, D), (B, T)
        x = torch.where((counts > 0).unsqueeze(-1), self.inp(step), self.empty_token.to(step.dtype))
        x = x + hidden.unsqueeze(-1).to(x.dtype) * self.hidden_token.to(x.dtype)
        x = x + sinusoidal_positions(T, x.shape[-1], x.device).to(x.dtype).unsqueeze(0)
        keys = real | (counts > 0)
        for i, layer in enumerate(self.transformer.layers):  # look-ahead in the first layer only: stacked, it would add up
            x = layer(x, causal_window_mask(keys, self.lookahead if i == 0 else 0))
        y = self.norm(x)  # (B, T, D)
        if self.next_out is None:
            return self.out(y)
        return torch.cat([self.out(y), self.next_out(y)], dim=-1)
