"""Pre-norm transformer encoder layer on ``scaled_dot_product_attention``, weight-compatible with PyTorch's.

``nn.TransformerEncoderLayer`` computes attention in training through ``F.multi_head_attention_forward``:
its attention dropout and its merge of a key-padding mask into a float mask send PyTorch to the
unfused math kernel (dropout masks alone were 16-18 % of a training step on CPU). This layer calls
``F.scaled_dot_product_attention`` directly with one boolean or float mask broadcast over heads,
which the fused CPU (flash) and CUDA (flash / memory-efficient) kernels accept in training.

Attention dropout (dropout of the attention probabilities) is a separate option, off by default:
the fused CPU kernel does not implement it (a non-zero value falls back to the math kernel on
CPU); the CUDA flash and memory-efficient kernels do. Residual and feed-forward dropout keep the
``dropout`` rate, applied exactly where ``nn.TransformerEncoderLayer`` applies it.

Parameter names (``self_attn.in_proj_weight``, ``self_attn.out_proj``, ``linear1``, ``linear2``,
``norm1``, ``norm2``) are those of ``nn.TransformerEncoderLayer(norm_first=True)``, so checkpoints of
either load into the other and the streaming key/value cache reads the same attributes.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SdpaSelfAttention(nn.Module):
    """Multi-head self-attention with the parameter layout of ``nn.MultiheadAttention`` (packed in-projection).

    Args:
        dim: model width D.
        heads: attention heads H (D divisible by H).
        dropout: attention-probability dropout in training (0 keeps the fused CPU kernel).
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention: dim={dim} is not divisible by heads={heads}")
        self.embed_dim, self.num_heads, self.dropout = dim, heads, dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        # nn.MultiheadAttention's initialisation in its order, so a seed gives the same weights as before
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Inputs: x (B, L, D); mask broadcastable to (B, H, L, L): bool (True = may attend) or float (added to scores).

        Returns: (B, L, D).
        """
        B, L, D = x.shape
        H = self.num_heads
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias).view(B, L, 3, H, D // H).permute(2, 0, 3, 1, 4)  # (3, B, H, L, Dh)
        if mask is not None and mask.dtype != torch.bool:
            mask = mask.to(qkv.dtype)  # a float bias must match the queries' dtype (bf16 under autocast)
        p = self.dropout if self.training else 0.0
        ctx = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=mask, dropout_p=p)  # (B, H, L, Dh)
        return self.out_proj(ctx.transpose(1, 2).reshape(B, L, D))


class SdpaEncoderLayer(nn.Module):
    """``x + attn(norm1(x))`` then ``x + ffn(norm2(x))``, ReLU feed-forward (as ``nn.TransformerEncoderLayer(norm_first=True)``).

    Args:
        dim: model width.
        heads: attention heads.
        ffn_dim: feed-forward hidden width.
        dropout: residual and feed-forward dropout.
        attention_dropout: attention-probability dropout (see the module docstring).
    """

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float = 0.1, attention_dropout: float = 0.0) -> None:
        super().__init__()
        self.self_attn = SdpaSelfAttention(dim, heads, attention_dropout)
        self.linear1, self.linear2 = nn.Linear(dim, ffn_dim), nn.Linear(ffn_dim, dim)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.dropout, self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(dropout), nn.Dropout(dropout)
        self.activation = nn.ReLU()

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Inputs: x (B, L, D); mask as `SdpaSelfAttention`. Returns: (B, L, D)."""
        x = x + self.dropout1(self.self_attn(self.norm1(x), mask))
        return x + self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(self.norm2(x))))))


class SdpaEncoder(nn.Module):
    """A stack of `SdpaEncoderLayer` sharing one mask (keys ``layers.<i>.*`` as ``nn.TransformerEncoder``).

    Args:
        layers: number of layers.
        dim, heads, ffn_dim, dropout, attention_dropout: as `SdpaEncoderLayer`.
    """

    def __init__(self, layers: int, dim: int, heads: int, ffn_dim: int, dropout: float = 0.1, attention_dropout: float = 0.0) -> None:
        super().__init__()
        # copies of one initialised layer, as nn.TransformerEncoder does: a seed gives the same weights as before
        layer = SdpaEncoderLayer(dim, heads, ffn_dim, dropout, attention_dropout)
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(layers))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Inputs: x (B, L, D); mask broadcastable to (B, H, L, L), bool (True = may attend) or float. Returns: (B, L, D)."""
        for layer in self.layers:
            x = layer(x, mask)
        return x
