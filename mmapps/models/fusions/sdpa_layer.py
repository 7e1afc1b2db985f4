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
either load into the other and the streaming key/value cache reads the same projections
(`SdpaSelfAttention.project_qkv`).

For adapters (LoRA, IA3 through ``peft``, which wraps ``nn.Linear`` modules only),
`SdpaSelfAttention.split_projections` turns the packed in-projection into explicit ``q_proj``,
``k_proj`` and ``v_proj`` linears holding the same weights (same outputs); `pack_projections` turns
them back (after merging) into the packed layout every checkpoint uses. A packed state dict loads
into a split layer and the reverse, so existing checkpoints still load either way. There is no
inference fast path reading raw weights here (unlike ``nn.MultiheadAttention``), so adapters are
always applied.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PackedRandomDropout(nn.Module):
    """Inverted dropout whose CPU keep-mask is drawn 4 elements per 64-bit random word.

    ``bernoulli_`` draws one random number per element and was the largest share of the dropout
    cost of a CPU training step; here each 64-bit word gives four 16-bit uniforms, compared against
    ``p`` (so ``p`` is rounded to a multiple of 1/65536). Other devices use ``F.dropout``.

    Args:
        p: probability of zeroing an element, in [0, 1].
    """

    def __init__(self, p: float = 0.1) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout: p={p}; expected a probability in [0, 1]")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu" or self.p == 1.0:
            return F.dropout(x, self.p, training=True)
        with torch.no_grad():
            n = x.numel()
            words = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64)  # 4 uniforms per word
            keep = words.view(torch.int16)[:n].view(x.shape) >= round(self.p * 65536) - 32768  # P(keep) = 1 - p
            scale = keep.to(x.dtype).mul_(1.0 / (1.0 - self.p))
        return x * scale

    def extra_repr(self) -> str:
        return f"p={self.p}"


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

    @property
    def packed(self) -> bool:
        """True when q/k/v live in the packed ``in_proj_weight`` (the default and the checkpoint layout)."""
        return "in_proj_weight" in self._parameters

    def project_qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Inputs: x (..., D). Returns: q, k, v (..., D) each, through adapters when the projections are split."""
        if self.packed:
            return F.linear(x, self.in_proj_weight, self.in_proj_bias).split(self.embed_dim, dim=-1)  # type: ignore[return-value]
        return self.q_proj(x), self.k_proj(x), self.v_proj(x)

    def split_projections(self) -> None:
        """Replace the packed in-projection by ``q_proj``, ``k_proj``, ``v_proj`` linears with the same weights."""
        if not self.packed:
            return
        D = self.embed_dim
        weight, bias = self.in_proj_weight.detach(), self.in_proj_bias.detach()
        del self.in_proj_weight, self.in_proj_bias
        for i, name in enumerate(("q_proj", "k_proj", "v_proj")):
            linear = nn.Linear(D, D, device=weight.device, dtype=weight.dtype)
            with torch.no_grad():
                linear.weight.copy_(weight[i * D : (i + 1) * D])
                linear.bias.copy_(bias[i * D : (i + 1) * D])
            setattr(self, name, linear)

    def pack_projections(self) -> None:
        """The inverse of `split_projections` (the projections must be plain ``nn.Linear``: merge adapters first)."""
        if self.packed:
            return
        parts = [getattr(self, name) for name in ("q_proj", "k_proj", "v_proj")]
        if not all(type(p) is nn.Linear for p in parts):
            raise RuntimeError("attention: merge or remove the adapters of q_proj/k_proj/v_proj before packing them")
        weight = torch.cat([p.weight.detach() for p in parts])  # (3D, D)
        bias = torch.cat([p.bias.detach() for p in parts])  # (3D,)
        for name in ("q_proj", "k_proj", "v_proj"):
            delattr(self, name)
        self.in_proj_weight = nn.Parameter(weight.clone(), requires_grad=parts[0].weight.requires_grad)
        self.in_proj_bias = nn.Parameter(bias.clone(), requires_grad=parts[0].bias.requires_grad)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: object, **kwargs: object) -> None:
        """Load a packed state dict into split projections and the reverse (adapters' keys are left as they are)."""
        packed_w, packed_b = prefix + "in_proj_weight", prefix + "in_proj_bias"
        D = self.embed_dim
        if not self.packed and packed_w in state_dict:
            weight, bias = state_dict.pop(packed_w), state_dict.pop(packed_b)
            for i, name in enumerate(("q_proj", "k_proj", "v_proj")):
                # an adapter-wrapped projection keeps its weight in base_layer
                base = f"{prefix}{name}.base_layer." if hasattr(getattr(self, name), "base_layer") else f"{prefix}{name}."
                state_dict[base + "weight"], state_dict[base + "bias"] = weight[i * D : (i + 1) * D], bias[i * D : (i + 1) * D]
        elif self.packed and prefix + "q_proj.weight" in state_dict:
            names = [f"{prefix}{n}_proj" for n in "qkv"]
            state_dict[packed_w] = torch.cat([state_dict.pop(n + ".weight") for n in names])
            state_dict[packed_b] = torch.cat([state_dict.pop(n + ".bias") for n in names])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)  # type: ignore[arg-type]

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Inputs: x (B, L, D); mask broadcastable to (B, H, L, L): bool (True = may attend) or float (added to scores).

        Returns: (B, L, D).
        """
        B, L, D = x.shape
        H = self.num_heads
        # q, k and v as (B, L, H, Dh) slices seen as (B, H, L, Dh): the fused kernel returns its output and
        # gradients in that layout, so the backward is one concatenation (permuting a packed (3, B, H, L, Dh)
        # tensor cost a strided copy and a stack in every backward)
        q, k, v = (part.reshape(B, L, H, D // H).transpose(1, 2) for part in self.project_qkv(x))  # (B, H, L, Dh) each
        if mask is not None and mask.dtype != torch.bool:
            mask = mask.to(q.dtype)  # a float bias must match the queries' dtype (bf16 under autocast)
        p = self.dropout if self.training else 0.0
        ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # (B, H, L, Dh)
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
        self.dropout, self.dropout1, self.dropout2 = (PackedRandomDropout(dropout) for _ in range(3))
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
