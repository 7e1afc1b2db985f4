"""Masked reductions shared by encoders and fusions."""

from __future__ import annotations

import torch
from torch import Tensor


def masked_mean(x: Tensor, mask: Tensor, dim: int = 1) -> Tensor:
    """Mean of `x` over `dim` where `mask` is True; zeros where nothing is masked in.

    Inputs:
        x: (B, T, D); mask: (B, T) bool.
    """
    weights = mask.to(x.dtype).unsqueeze(-1)  # (B, T, 1)
    total = (x * weights).sum(dim)
    count = weights.sum(dim).clamp_min(1.0)
    return total / count


def segment_max(values: Tensor, offsets: Tensor) -> Tensor:
    """Per-segment max of packed rows: values (sum N, D), offsets (B + 1,) -> (B, D); empty -> 0."""
    batch_size = offsets.numel() - 1
    counts = offsets[1:] - offsets[:-1]
    index = torch.repeat_interleave(torch.arange(batch_size, device=values.device), counts)  # (sum N,)
    out = values.new_full((batch_size, values.shape[1]), float("-inf"))
    out = out.scatter_reduce(0, index.unsqueeze(1).expand_as(values), values, reduce="amax", include_self=True)
    return torch.where(torch.isinf(out), torch.zeros_like(out), out)
