"""Window-by-window inference equal to whole-clip inference (``watch``).

Encoders see each window alone, so a window's tokens are computed once. The fusion then runs
incrementally:

- causal attention fusion without look-ahead (the default): per transformer layer, the keys and
  values of past tokens are cached (causality means they never change), and only the new
  window's tokens are pushed through the layers, attending to the cache. Memory per window:
  layers x M x 2D floats; compute per window: constant apart from the attention over the cache.
- fusions that treat each time step alone (concat, gated, lmf, late with ``per_timestep``): the
  model's own per-step path on the new window only.

The ``timestep`` head's causal temporal convolution (``temporal_kernel`` k > 0) sees the last k
steps: `HeadState` keeps the head's last k - 1 inputs (per modality for late fusion), so a
window's logits equal the whole-clip ones. Causal attention with look-ahead, or non-causal
attention, cannot stream exactly and is refused.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from mmapps.errors import ConfigError
from mmapps.models.types import EncoderOutput, FusionOutput


class _KeyValueCache:
    """Growing (H, N, Dh) keys and values of one attention layer (capacity doubles when full)."""

    def __init__(self) -> None:
        self.k: Tensor | None = None
        self.v: Tensor | None = None
        self.n = 0

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Add (H, M, Dh) keys/values; return every key and value so far."""
        if self.k is None or self.n + k.shape[1] > self.k.shape[1]:
            capacity = max(64, 2 * (self.n + k.shape[1]))
            grown_k = k.new_zeros((k.shape[0], capacity, k.shape[2]))
            grown_v = v.new_zeros((v.shape[0], capacity, v.shape[2]))
            if self.k is not None:
                grown_k[:, : self.n], grown_v[:, : self.n] = self.k[:, : self.n], self.v[:, : self.n]
            self.k, self.v = grown_k, grown_v
        self.k[:, self.n : self.n + k.shape[1]] = k
        self.v[:, self.n : self.n + v.shape[1]] = v
        self.n += k.shape[1]
        return self.k[:, : self.n], self.v[:, : self.n]


def _attention_layer_step(layer: nn.TransformerEncoderLayer, x_new: Tensor, cache: _KeyValueCache, keep: Tensor, bias: Tensor | None = None) -> Tensor:
    """One pre-norm encoder layer for the new tokens only; their keys/values join ``cache`` first.

    Inputs: x_new (N, D) layer inputs of the new tokens; keep (K,) bool mask of every cached key
    (new ones last); bias (H, N, K) additive attention bias (ALiBi) or None. Past tokens' keys and
    values never change (causal attention), so they are cached.
    """
    attn = layer.self_attn
    D, H = x_new.shape[-1], attn.num_heads
    qkv = layer.norm1(x_new) @ attn.in_proj_weight.T + attn.in_proj_bias  # (N, 3D)
    q, k, v = (part.reshape(-1, H, D // H).transpose(0, 1) for part in qkv.split(D, dim=-1))  # (H, N, Dh) each
    keys, values = cache.append(k, v)  # (H, K, Dh)
    scores = (q @ keys.transpose(1, 2)) / math.sqrt(D // H)  # (H, N, K)
    if bias is not None:
        scores = scores + bias.to(scores.dtype)
    scores = scores.masked_fill(~keep.view(1, 1, -1), float("-inf"))
    ctx = (scores.softmax(-1) @ values).transpose(0, 1).reshape(-1, D)  # (N, D)
    x = x_new + attn.out_proj(ctx)
    return x + layer.linear2(layer.activation(layer.linear1(layer.norm2(x))))


class HeadState:
    """A ``timestep`` head run one step at a time, with its last ``temporal_kernel - 1`` inputs kept.

    Args:
        head: the task head (any head taking a `FusionOutput` of (B, T, D) and giving (B, T, C)).
    """

    def __init__(self, head: nn.Module) -> None:
        self.head = head
        self.keep = max(getattr(head, "temporal_kernel", 0) - 1, 0)
        self.past: Tensor | None = None  # (1, <= keep, D)

    def __call__(self, step: Tensor) -> Tensor:
        """Logits (1, C) of the new step ``step`` (1, 1, D)."""
        x = step if self.past is None else torch.cat([self.past, step], dim=1)  # (1, <= keep + 1, D)
        self.past = x[:, -self.keep :] if self.keep else None
        return self.head(FusionOutput(x))[:, -1]


class StreamingScorer:
    """Feeds one window at a time through a trained `FusionModel`; returns that window's logits (C,).

    Args:
        model: the core fusion model (eval mode), encoders keyed by modality.
        task: output task name.
    """

    def __init__(self, model: nn.Module, task: str = "events") -> None:
        model = getattr(model, "core", model)  # unwrap `WindowAlignedModel`
        self.model, self.task = model.eval(), task
        self.modalities = list(model.modalities)
        fusion = model.fusion
        self.incremental = getattr(fusion, "per_timestep", False)
        if self.incremental and not (getattr(fusion, "causal", False) and getattr(fusion, "lookahead", 0) == 0):
            raise ConfigError("watch: the attention fusion must be causal without look-ahead to stream exactly "
                              "(model.fusion.options.causal=true, lookahead=0); retrain with those options")
        if not model.per_timestep:
            raise ConfigError("watch: the model must fuse per time step (model.fusion.per_timestep=true)")
        head = model.heads[task]
        self.heads = {m: HeadState(h) for m, h in head.items()} if isinstance(head, nn.ModuleDict) else HeadState(head)
        self.caches: list[_KeyValueCache] = []  # per layer: keys and values of past tokens
        self.keep = torch.zeros(0, dtype=torch.bool)
        self.positions: Tensor | None = None
        self.key_time = torch.zeros(0, dtype=torch.long)  # time of every cached key (-1: the summary token)
        self.t = 0

    @torch.inference_mode()
    def step(self, window_batch: Any) -> Tensor:
        """Logits (C,) of the next window; ``window_batch`` is a collated `Batch` of one clip and one window."""
        present = {m: window_batch.inputs[m].present for m in self.modalities}
        features = {m: self.model.encoders[m](window_batch.inputs[m]) for m in self.modalities}
        if getattr(self.model.fusion, "level", "features") == "predictions":
            predictions = {m: self.heads[m](features[m].tokens).unsqueeze(1) for m in self.modalities}  # (1, 1, C) each
            mask = {m: features[m].token_mask & present[m].unsqueeze(1) for m in self.modalities}  # (1, 1) each
            logits = self.model.fusion(predictions, mask)[0, -1]
        else:
            fused = self._attention_step(features, present).view(1, 1, -1) if self.incremental else self.model._fuse(features, present).pooled  # (1, 1, D)
            logits = self.heads(fused)[0]
        self.t += 1
        return logits.float()

    def _attention_step(self, features: dict[str, EncoderOutput], present: dict[str, Tensor]) -> Tensor:
        from mmapps.models.fusions.attention import alibi_bias, sinusoidal_positions

        fusion = self.model.fusion
        layers = fusion.transformer.layers
        tokens = torch.stack([fusion.proj[m](features[m].tokens[0, 0]) + fusion.modality_embedding[i] for i, m in enumerate(fusion.modalities)])  # (M, D)
        keep_new = torch.stack([features[m].token_mask[0, 0] & present[m][0] for m in fusion.modalities])  # (M,)
        M, D = tokens.shape
        alibi = getattr(fusion, "positions", "absolute") == "alibi"
        if not alibi:
            if self.positions is None or self.t >= self.positions.shape[0]:  # table rows depend only on their position
                self.positions = sinusoidal_positions(max(64, 2 * (self.t + 1)), D, tokens.device)
            tokens = tokens + self.positions[self.t].to(tokens.dtype)
        if not self.caches:  # the summary token sees only itself (time -1): its keys/values never change
            self.caches = [_KeyValueCache() for _ in layers]
            x = fusion.summary_token[0].to(tokens.dtype)  # (1, D)
            self.keep = torch.ones(1, dtype=torch.bool, device=tokens.device)
            self.key_time = torch.full((1,), -1, device=tokens.device)
            for layer, cache in zip(layers, self.caches):
                x = _attention_layer_step(layer, x, cache, self.keep)
        self.keep = torch.cat([self.keep, keep_new])
        self.key_time = torch.cat([self.key_time, torch.full((M,), self.t, device=tokens.device)])
        bias = alibi_bias(self.key_time[-M:], self.key_time, fusion.slopes) if alibi else None  # (H, M, K)
        x = tokens
        for layer, cache in zip(layers, self.caches):
            x = _attention_layer_step(layer, x, cache, self.keep, bias)
        out = fusion.norm(x)  # (M, D)
        weights = keep_new.to(out.dtype).unsqueeze(-1)
        return (out * weights).sum(0) / weights.sum().clamp_min(1.0)  # (D,)
