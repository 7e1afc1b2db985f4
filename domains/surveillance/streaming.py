"""Window-by-window inference equal to whole-clip inference (``watch``).

Encoders see each window alone, so a window's tokens are computed once. The fusion then runs
incrementally:

- causal attention fusion without look-ahead (the default): per transformer layer, the inputs of
  past tokens are cached (causality means they never change), and only the new window's tokens
  are pushed through the layers, attending to the cache. Memory per window: layers x M x D floats.
- fusions that treat each time step alone (concat, gated, lmf, late with ``per_timestep``): the
  model's own per-step path on the new window only.

Causal attention with look-ahead, or non-causal attention, cannot stream exactly and is refused.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from mmapps.errors import ConfigError
from mmapps.models.types import EncoderOutput


def _attention_layer_step(layer: nn.TransformerEncoderLayer, x_new: Tensor, keys: Tensor, keep: Tensor) -> Tensor:
    """One pre-norm encoder layer for the new tokens only, attending to ``keys`` (cached + new inputs).

    Inputs: x_new (N, D) layer inputs of the new tokens; keys (K, D) layer inputs of every visible
    token (new ones last); keep (K,) bool key mask.
    """
    attn = layer.self_attn
    D, H = x_new.shape[-1], attn.num_heads
    q_in, kv_in = layer.norm1(x_new), layer.norm1(keys)
    w, b = attn.in_proj_weight, attn.in_proj_bias
    q = (q_in @ w[:D].T + b[:D]).view(-1, H, D // H).transpose(0, 1)  # (H, N, Dh)
    k = (kv_in @ w[D : 2 * D].T + b[D : 2 * D]).view(-1, H, D // H).transpose(0, 1)  # (H, K, Dh)
    v = (kv_in @ w[2 * D :].T + b[2 * D :]).view(-1, H, D // H).transpose(0, 1)  # (H, K, Dh)
    scores = (q @ k.transpose(1, 2)) / math.sqrt(D // H)  # (H, N, K)
    scores = scores.masked_fill(~keep.view(1, 1, -1), float("-inf"))
    ctx = (scores.softmax(-1) @ v).transpose(0, 1).reshape(-1, D)  # (N, D)
    x = x_new + attn.out_proj(ctx)
    return x + layer.linear2(layer.activation(layer.linear1(layer.norm2(x))))


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
        self.cache: list[list[Tensor]] = []  # per layer: inputs of past tokens
        self.keep: list[Tensor] = []
        self.t = 0

    @torch.no_grad()
    def step(self, window_batch: Any) -> Tensor:
        """Logits (C,) of the next window; ``window_batch`` is a collated `Batch` of one clip and one window."""
        present = {m: window_batch.inputs[m].present for m in self.modalities}
        features = {m: self.model.encoders[m](window_batch.inputs[m]) for m in self.modalities}
        if not self.incremental:
            if getattr(self.model.fusion, "level", "features") == "predictions":
                out = self.model._late(features, present)[self.task]
            else:
                out = self.model.heads[self.task](self.model._fuse(features, present))
            self.t += 1
            return out[0, -1].float()
        fused = self._attention_step(features, present)
        from mmapps.models.types import FusionOutput

        return self.model.heads[self.task](FusionOutput(fused.view(1, 1, -1)))[0, 0].float()

    def _attention_step(self, features: dict[str, EncoderOutput], present: dict[str, Tensor]) -> Tensor:
        from mmapps.models.fusions.attention import sinusoidal_positions

        fusion = self.model.fusion
        layers = fusion.transformer.layers
        tokens = torch.stack([fusion.proj[m](features[m].tokens[0, 0]) + fusion.modality_embedding[i] for i, m in enumerate(fusion.modalities)])  # (M, D)
        keep_new = torch.stack([features[m].token_mask[0, 0] & present[m][0] for m in fusion.modalities])  # (M,)
        D = tokens.shape[-1]
        tokens = tokens + sinusoidal_positions(self.t + 1, D, tokens.device)[self.t].to(tokens.dtype)
        if not self.cache:  # the summary token sees only itself (time -1): its layer inputs never change
            x = fusion.summary_token[0].to(tokens.dtype)  # (1, D)
            self.keep = [torch.ones(1, dtype=torch.bool, device=tokens.device)]
            for layer in layers:
                self.cache.append([x])
                x = _attention_layer_step(layer, x, x, self.keep[0])
        keep = torch.cat(self.keep + [keep_new])
        x = tokens
        for li, layer in enumerate(layers):
            self.cache[li].append(x)
            keys = torch.cat(self.cache[li])
            x = _attention_layer_step(layer, x, keys, keep)
        self.keep.append(keep_new)
        self.t += 1
        out = fusion.norm(x)  # (M, D)
        weights = keep_new.to(out.dtype).unsqueeze(-1)
        return (out * weights).sum(0) / weights.sum().clamp_min(1.0)  # (D,)
