"""Task heads: multi-class, multi-label, regression and per-time-step scoring."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmapps.models.types import FusionOutput
from mmapps.registry import HEADS


class _LinearHead(nn.Module):
    """``LayerNorm -> Dropout -> Linear`` on the fused vector; works on (B, D) and (B, T, D).

    Args:
        in_dim: fused width.
        num_labels: outputs (classes, findings, targets).
        hidden: optional hidden width (an extra Linear + GELU) for a deeper head.
        dropout: dropout before the output layer.
    """

    def __init__(self, in_dim: int, num_labels: int, hidden: int | None = None, dropout: float = 0.1) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.LayerNorm(in_dim), nn.Dropout(dropout)]
        if hidden:
            layers += [nn.Linear(in_dim, hidden), nn.GELU()]
            in_dim = hidden
        layers.append(nn.Linear(in_dim, num_labels))
        self.net = nn.Sequential(*layers)

    def forward(self, fused: FusionOutput) -> Tensor:
        return self.net(fused.pooled)


@HEADS.register("multiclass")
class MultiClassHead(_LinearHead):
    """Logits (B, C) for a softmax over C classes."""


@HEADS.register("multilabel")
class MultiLabelHead(_LinearHead):
    """Logits (B, L) for L independent sigmoids (findings, tags)."""


@HEADS.register("regression")
class RegressionHead(_LinearHead):
    """Real values (B, K)."""


@HEADS.register("timestep")
class TimestepHead(_LinearHead):
    """Per-time-step logits (B, T, C) from per-time-step fusion (``fusion.per_timestep=True``).

    Args:
        temporal_kernel: when > 0, a causal depthwise convolution over the last `temporal_kernel`
            steps (residual) runs before the output layer, giving fusions that see one time step
            at a time (concat, late, gated, LMF) some temporal context. 0 = none (the default).
        (other arguments as in the other heads)
    """

    def __init__(self, in_dim: int, num_labels: int, hidden: int | None = None, dropout: float = 0.1, temporal_kernel: int = 0) -> None:
        super().__init__(in_dim, num_labels, hidden, dropout)
        self.temporal_kernel = temporal_kernel
        self.temporal = nn.Conv1d(in_dim, in_dim, temporal_kernel, groups=in_dim) if temporal_kernel > 0 else None

    def forward(self, fused: FusionOutput) -> Tensor:
        if fused.pooled.dim() != 3:
            raise ValueError("timestep head needs per-time-step features (B, T, D): set model.fusion.per_timestep=true")
        x = fused.pooled  # (B, T, D)
        if self.temporal is not None:
            past = nn.functional.pad(x.transpose(1, 2), (self.temporal_kernel - 1, 0))  # (B, D, T + k - 1): causal
            x = x + torch.nn.functional.gelu(self.temporal(past)).transpose(1, 2)  # (B, T, D)
        return self.net(x)
