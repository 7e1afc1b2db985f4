"""Attention fusion: a cross-modal transformer over all modalities' tokens, with a causal streaming mode."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mmapps.models.fusions.sdpa_layer import SdpaEncoder
from mmapps.models.types import EncoderOutput, FusionOutput
from mmapps.registry import FUSIONS


def sinusoidal_positions(length: int, dim: int, device: torch.device) -> Tensor:
    """(length, dim) fixed positional encoding, valid for any clip length."""
    position = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return table


def alibi_slopes(heads: int) -> Tensor:
    """Per-head ALiBi slopes ``2^(-8h/H)``, h = 1..H (Press et al., 2022)."""
    return torch.tensor([2.0 ** (-8.0 * h / heads) for h in range(1, heads + 1)])


def alibi_bias(query_time: Tensor, key_time: Tensor, slopes: Tensor) -> Tensor:
    """(H, Q, K) additive attention bias ``-slope_h * |t_q - t_k|``; time -1 (the summary token) is exempt."""
    distance = (query_time.unsqueeze(1) - key_time.unsqueeze(0)).abs().float()  # (Q, K)
    distance = distance.masked_fill((query_time < 0).unsqueeze(1) | (key_time < 0).unsqueeze(0), 0.0)
    return -slopes.view(-1, 1, 1).to(distance.device) * distance


@FUSIONS.register("attention")
class AttentionFusion(nn.Module):
    """Tokens of every modality (projected to `dim`, tagged with a modality embedding) attend to each other.

    Sample level: a learned summary token is prepended; its output is the pooled vector.
    Per time step (``per_timestep=True``, tokens (B, T, d_m) aligned across modalities): the
    sequence is the T x M grid of tokens with time positions; with ``causal=True`` a token at time
    t sees only tokens at times <= t + ``lookahead`` (streaming); the output at t is the mean of the
    present modalities' outputs at t. Absent modalities and padded tokens are key-masked, so they
    contribute nothing.

    Args:
        modality_to_dim: input width per modality.
        dim: model width.
        layers: transformer layers.
        heads: attention heads.
        dropout: residual and feed-forward dropout in the transformer.
        attention_dropout: dropout of the attention probabilities; 0 (the default) keeps training on
            the fused CPU attention kernel, which does not implement it (CUDA's fused kernels do).
        per_timestep: fuse per time step (see above).
        causal: causal attention over time (per_timestep only).
        lookahead: time steps of look-ahead allowed in causal mode (counted in latency).
        positions: how time enters per-time-step attention: ``absolute`` (sinusoidal positions
            from the clip start) or ``alibi`` (a per-head penalty on the time distance between
            tokens, no absolute position: a model trained on short clips keeps its behaviour
            on long streams).
    """

    level = "features"

    def __init__(
        self,
        modality_to_dim: dict[str, int],
        dim: int,
        layers: int = 2,
        heads: int = 4,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        per_timestep: bool = False,
        causal: bool = False,
        lookahead: int = 0,
        positions: str = "absolute",
    ) -> None:
        super().__init__()
        if positions not in ("absolute", "alibi"):
            raise ValueError(f"attention fusion: positions={positions!r}; expected 'absolute' or 'alibi'")
        self.modalities = sorted(modality_to_dim)
        self.proj = nn.ModuleDict({m: nn.Linear(modality_to_dim[m], dim) for m in self.modalities})
        self.modality_embedding = nn.Parameter(torch.randn(len(self.modalities), dim) * 0.02)
        self.summary_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.transformer = SdpaEncoder(layers, dim, heads, ffn_dim=2 * dim, dropout=dropout, attention_dropout=attention_dropout)
        self.norm = nn.LayerNorm(dim)
        self.per_timestep = per_timestep
        self.causal = causal
        self.lookahead = lookahead
        self.positions = positions
        self.register_buffer("slopes", alibi_slopes(heads), persistent=False)
        self.out_dim = dim

    def forward(self, features: dict[str, EncoderOutput], present: dict[str, Tensor]) -> FusionOutput:
        if self.per_timestep:
            return self._forward_timesteps(features, present)
        tokens, masks = [], []
        for i, m in enumerate(self.modalities):
            tokens.append(self.proj[m](features[m].tokens) + self.modality_embedding[i])  # (B, T_m, D)
            masks.append(features[m].token_mask & present[m].unsqueeze(1))
        B = tokens[0].shape[0]
        x = torch.cat([self.summary_token.expand(B, -1, -1).to(tokens[0].dtype)] + tokens, dim=1)  # (B, 1 + sum T_m, D)
        keep = torch.cat([torch.ones(B, 1, dtype=torch.bool, device=x.device)] + masks, dim=1)
        out = self.norm(self.transformer(x, keep.view(B, 1, 1, -1)))  # key padding broadcast over heads and queries
        return FusionOutput(out[:, 0], out[:, 1:], keep[:, 1:])

    def _forward_timesteps(self, features: dict[str, EncoderOutput], present: dict[str, Tensor]) -> FusionOutput:
        M = len(self.modalities)
        grid = torch.stack([self.proj[m](features[m].tokens) + self.modality_embedding[i] for i, m in enumerate(self.modalities)], dim=2)  # (B, T, M, D)
        keep = torch.stack([features[m].token_mask & present[m].unsqueeze(1) for m in self.modalities], dim=2)  # (B, T, M)
        B, T, _, D = grid.shape
        if self.positions == "absolute":
            grid = grid + sinusoidal_positions(T, D, grid.device).to(grid.dtype).view(1, T, 1, D)
        x = torch.cat([self.summary_token.expand(B, -1, -1).to(grid.dtype), grid.reshape(B, T * M, D)], dim=1)  # (B, 1 + T*M, D)
        key_keep = torch.cat([torch.ones(B, 1, dtype=torch.bool, device=x.device), keep.reshape(B, T * M)], dim=1)
        time = torch.cat([torch.full((1,), -1, device=x.device), torch.arange(T, device=x.device).repeat_interleave(M)])  # (1 + T*M,)
        out = self.norm(self.transformer(x, self._timestep_mask(time, key_keep)))
        per_step = out[:, 1:].reshape(B, T, M, D)
        weights = keep.to(per_step.dtype).unsqueeze(-1)  # (B, T, M, 1)
        fused = (per_step * weights).sum(2) / weights.sum(2).clamp_min(1.0)  # (B, T, D)
        step_mask = keep.any(2)  # (B, T)
        return FusionOutput(fused, fused, step_mask)

    def _timestep_mask(self, time: Tensor, key_keep: Tensor) -> Tensor:
        """One attention mask for ``scaled_dot_product_attention``: (B, 1, 1, L) or (B, 1, L, L) bool
        (True = may attend), or with ALiBi a (B, H, L, L) float bias, -inf where attention is not allowed.

        Inputs: time (L,) time of every token (-1: the summary token); key_keep (B, L).
        """
        B, L = key_keep.shape
        allowed = key_keep.view(B, 1, 1, L)
        if self.causal:
            future = time.unsqueeze(0) > (time.unsqueeze(1) + self.lookahead)  # (L, L) True = may not attend
            future[:, 0] = False  # the summary token is always visible, so no row is empty
            allowed = allowed & ~future  # (B, 1, L, L)
        if self.positions != "alibi":
            return allowed
        bias = alibi_bias(time, time, self.slopes)  # (H, L, L)
        return bias.masked_fill(~allowed, float("-inf"))  # (B, H, L, L)
