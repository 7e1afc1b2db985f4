"""Window-by-window inference with bounded state (``watch``), equal to whole-clip inference within its context.

Encoders see each window alone, so a window's tokens are computed once. `StreamStep` then runs
one window through the fusion and the head with an explicit, fixed-size state, so the same module
is ``watch``'s PyTorch path and the exported ONNX step graph (``export.py``):

- causal attention fusion without look-ahead (the default): per transformer layer, the keys and
  values of past tokens (causality means they never change) sit in a **ring buffer of
  ``max_context`` windows** (``data.options.max_context``, default 600 windows = 10 min at 1 s
  windows); window t overwrites the slots of window t - max_context. The summary token's keys and
  values (it sees only itself) are computed from the weights, not stored. Only the new window's
  tokens are pushed through the layers, attending to the buffer. State per stream: layers x 2 x
  max_context x M x D floats (the default model: 2 x 2 x 600 x 3 x 64 x 4 B = 1.8 MB) plus a
  keep mask and the time of every slot; compute per window: constant (attention over the buffer).
  While a stream is shorter than ``max_context`` windows its scores equal the whole-clip model's
  (and the former unbounded cache's); beyond it, a window no longer sees windows older than
  ``max_context`` (see docs/surveillance.md for how much that changes the scores).
- fusions that treat each time step alone (concat, gated, lmf, late with ``per_timestep``): the
  model's own per-step path on the new window only; no fusion state.

The ``timestep`` head's causal temporal convolution (``temporal_kernel`` k > 1) sees the last k
steps: the state keeps the head's last k - 1 inputs (per modality for late fusion), zeros at the
start (the whole-clip convolution's padding), so a window's logits equal the whole-clip ones.
Causal attention with look-ahead, or non-causal attention, cannot stream exactly and is refused.

State tensors (batch axis first; a batch holds independent streams, each at its own step):
``step`` int64 (B, 1); attention only: ``keys`` / ``values`` float32 (B, layers, heads, S, head_dim)
with S = max_context x M, ``key_keep`` bool (B, S) and ``key_time`` int64 (B, S) (window index of
each slot); head state ``head_past`` (or ``head_past_<modality>`` for late fusion) float32
(B, k - 1, D). All zeros is the state of a new stream.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmapps.data.sample import ModalityBatch
from mmapps.errors import ConfigError
from mmapps.models.types import FusionOutput

DEFAULT_MAX_CONTEXT = 600  # windows; keep in step with SurveillanceDataOptions.max_context


def step_positions(step: Tensor, dim: int) -> Tensor:
    """Rows ``step`` (B,) of `mmapps.models.fusions.attention.sinusoidal_positions`: (B, dim), same arithmetic."""
    freq = torch.exp(torch.arange(0, dim, 2, device=step.device, dtype=torch.float32) * (-math.log(10000.0) / dim))  # (dim/2,)
    angle = step.to(torch.float32).unsqueeze(1) * freq  # (B, dim/2)
    return torch.stack([torch.sin(angle), torch.cos(angle)], dim=2).reshape(step.shape[0], dim)  # interleaved: 0::2 sin, 1::2 cos


def _heads(x: Tensor, H: int) -> Tensor:
    B, N, D = x.shape
    return x.reshape(B, N, H, D // H).transpose(1, 2)  # (B, H, N, Dh)


def _ffn(layer: nn.Module, x: Tensor, ctx: Tensor) -> Tensor:
    x = x + layer.self_attn.out_proj(ctx)
    return x + layer.linear2(layer.activation(layer.linear1(layer.norm2(x))))


def _summary_keys(layers: nn.ModuleList, summary: Tensor) -> list[tuple[Tensor, Tensor]]:
    """Per layer the summary token's (k, v) (1, H, 1, Dh): it attends only to itself (time -1)."""
    x, out = summary, []  # (1, 1, D)
    for layer in layers:
        attn = layer.self_attn
        D, H = x.shape[-1], attn.num_heads
        _, k, v = (_heads(p, H) for p in F.linear(layer.norm1(x), attn.in_proj_weight, attn.in_proj_bias).split(D, dim=-1))
        out.append((k, v))
        x = _ffn(layer, x, v.transpose(1, 2).reshape(1, 1, D))  # softmax over one key is 1: the context is v
    return out


def _zero_absent(mb: ModalityBatch) -> ModalityBatch:
    """Zeros in the windows of streams that lack the modality: whatever they held (NaN, huge values) changes nothing."""
    keep = mb.present if mb.mask is None else mb.present & mb.mask.any(1)  # (B,)
    data = torch.where(keep.view((-1,) + (1,) * (mb.data.dim() - 1)), mb.data, torch.zeros_like(mb.data))
    return ModalityBatch(data, mb.present, mb.mask, mb.offsets)


class StreamStep(nn.Module):
    """One window of B streams plus their state -> logits (B, C) and the new state.

    Args:
        model: the core `FusionModel` (or `WindowAlignedModel`), eval mode, per-time-step fusion.
        task: the output task.
        max_context: ring-buffer capacity in windows (attention fusion).

    Raises:
        ConfigError: a fusion that cannot stream exactly (non-causal, look-ahead, not per time step).
    """

    def __init__(self, model: nn.Module, task: str = "events", max_context: int = DEFAULT_MAX_CONTEXT) -> None:
        super().__init__()
        model = getattr(model, "core", model)  # unwrap `WindowAlignedModel`
        fusion = model.fusion
        self.incremental = bool(getattr(fusion, "per_timestep", False))
        if self.incremental and not (getattr(fusion, "causal", False) and getattr(fusion, "lookahead", 0) == 0):
            raise ConfigError("watch: the attention fusion must be causal without look-ahead to stream exactly "
                              "(model.fusion.options.causal=true, lookahead=0); retrain with those options")
        if not model.per_timestep:
            raise ConfigError("watch: the model must fuse per time step (model.fusion.per_timestep=true)")
        if max_context < 1:
            raise ConfigError(f"watch: max_context={max_context}; expected at least 1 window")
        self.model, self.task, self.max_context = model.eval(), task, int(max_context)
        self.modalities = list(model.modalities)
        self.late = getattr(fusion, "level", "features") == "predictions"
        head = model.heads[task]
        self.head_keys = {f"head_past_{m}": m for m in self.modalities} if self.late else {"head_past": None}
        self.kernel = {key: max(getattr(head[m] if m else head, "temporal_kernel", 0) - 1, 0) for key, m in self.head_keys.items()}
        self.head_dim_in = {key: (model.encoders[m].out_dim if m else fusion.out_dim) for key, m in self.head_keys.items()}

    def state_shapes(self) -> dict[str, tuple[str, tuple[int, ...]]]:
        """State name -> (dtype, shape without the batch axis)."""
        shapes: dict[str, tuple[str, tuple[int, ...]]] = {"step": ("int64", (1,))}
        if self.incremental:
            fusion = self.model.fusion
            L, H, D = len(fusion.transformer.layers), fusion.transformer.layers[0].self_attn.num_heads, fusion.out_dim
            S = self.max_context * len(fusion.modalities)
            shapes |= {"keys": ("float32", (L, H, S, D // H)), "values": ("float32", (L, H, S, D // H)),
                       "key_keep": ("bool", (S,)), "key_time": ("int64", (S,))}
        for key, k in self.kernel.items():
            if k:
                shapes[key] = ("float32", (k, self.head_dim_in[key]))
        return shapes

    def initial_state(self, batch_size: int = 1, device: torch.device | None = None) -> dict[str, Tensor]:
        """The state of ``batch_size`` new streams (all zeros)."""
        dtypes = {"int64": torch.int64, "float32": torch.float32, "bool": torch.bool}
        return {name: torch.zeros((batch_size, *shape), dtype=dtypes[dtype], device=device) for name, (dtype, shape) in self.state_shapes().items()}

    def forward(self, windows: dict[str, ModalityBatch], state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Inputs: per modality a `ModalityBatch` of one window per stream (data (B, 1, ...), present (B,));
        ``state`` as `state_shapes`. Returns logits (B, C) and the new state."""
        model = self.model
        windows = {m: _zero_absent(windows[m]) for m in self.modalities}
        features = {m: model.encoders[m](windows[m]) for m in self.modalities}
        present = {m: windows[m].present for m in self.modalities}
        new_state = {"step": state["step"] + 1}
        if self.late:
            predictions = {m: self._head(model.heads[self.task][m], features[m].tokens, state, f"head_past_{m}", new_state).unsqueeze(1) for m in self.modalities}  # (B, 1, C)
            mask = {m: features[m].token_mask & present[m].unsqueeze(1) for m in self.modalities}  # (B, 1)
            return model.fusion(predictions, mask)[:, -1], new_state
        if self.incremental:
            fused = self._attention(features, present, state, new_state).unsqueeze(1)  # (B, 1, D)
        else:
            fused = model._fuse(features, present).pooled  # (B, 1, D)
        return self._head(model.heads[self.task], fused, state, "head_past", new_state), new_state

    def _head(self, head: nn.Module, x: Tensor, state: dict[str, Tensor], key: str, new_state: dict[str, Tensor]) -> Tensor:
        """Logits (B, C) of the new step ``x`` (B, 1, D), with the head's last k - 1 inputs from the state."""
        if self.kernel[key]:
            x = torch.cat([state[key].to(x.dtype), x], dim=1)  # (B, k, D)
            new_state[key] = x[:, 1:]
        return head(FusionOutput(x))[:, -1]

    def _attention(self, features: dict[str, Any], present: dict[str, Tensor], state: dict[str, Tensor], new_state: dict[str, Tensor]) -> Tensor:
        fusion = self.model.fusion
        layers = fusion.transformer.layers
        tokens = torch.stack([fusion.proj[m](features[m].tokens[:, 0]) + fusion.modality_embedding[i] for i, m in enumerate(fusion.modalities)], dim=1)  # (B, M, D)
        keep_new = torch.stack([features[m].token_mask[:, 0] & present[m] for m in fusion.modalities], dim=1)  # (B, M)
        B, M, D = tokens.shape
        step = state["step"][:, 0]  # (B,)
        if fusion.positions != "alibi":
            tokens = tokens + step_positions(step, D).to(tokens.dtype).unsqueeze(1)
        S = self.max_context * M
        slot_window = torch.arange(S, device=tokens.device) // M  # (S,)
        write = slot_window.unsqueeze(0) == (step % self.max_context).unsqueeze(1)  # (B, S): the slots of this window
        key_keep = (write & keep_new.repeat(1, self.max_context)) | (~write & state["key_keep"])  # (B, S); no Where on bool (onnxruntime has none)
        key_time = torch.where(write, step.unsqueeze(1), state["key_time"])  # (B, S)
        keep_all = torch.cat([torch.ones(B, 1, dtype=torch.bool, device=tokens.device), key_keep], dim=1)  # (B, 1 + S)
        bias = None
        if fusion.positions == "alibi":  # (B, H, M, 1 + S); the summary token (time -1) is exempt
            times = torch.cat([torch.full((B, 1), -1, dtype=key_time.dtype, device=key_time.device), key_time], dim=1)
            distance = (step.view(B, 1, 1) - times.unsqueeze(1)).abs().to(tokens.dtype).masked_fill(times.unsqueeze(1) < 0, 0.0)  # (B, 1, 1 + S)
            bias = -fusion.slopes.to(tokens.dtype).view(1, -1, 1, 1) * distance.unsqueeze(1)  # `alibi_bias`, batched over streams
        summary = _summary_keys(layers, fusion.summary_token.to(tokens.dtype))
        write_slots = write.view(B, 1, S, 1)
        keys_out, values_out = [], []
        x = tokens
        for i, layer in enumerate(layers):
            attn = layer.self_attn
            H = attn.num_heads
            q, k, v = (_heads(p, H) for p in F.linear(layer.norm1(x), attn.in_proj_weight, attn.in_proj_bias).split(D, dim=-1))  # (B, H, M, Dh)
            keys = torch.where(write_slots, k.repeat(1, 1, self.max_context, 1), state["keys"][:, i].to(k.dtype))  # (B, H, S, Dh)
            values = torch.where(write_slots, v.repeat(1, 1, self.max_context, 1), state["values"][:, i].to(v.dtype))
            keys_out.append(keys)
            values_out.append(values)
            sk, sv = summary[i]
            all_k = torch.cat([sk.expand(B, -1, -1, -1), keys], dim=2)  # (B, H, 1 + S, Dh)
            all_v = torch.cat([sv.expand(B, -1, -1, -1), values], dim=2)
            scores = (q @ all_k.transpose(2, 3)) / math.sqrt(D // H)  # (B, H, M, 1 + S)
            if bias is not None:
                scores = scores + bias
            scores = scores.masked_fill(~keep_all.view(B, 1, 1, -1), float("-inf"))
            ctx = (scores.softmax(-1) @ all_v).transpose(1, 2).reshape(B, M, D)  # (B, M, D)
            x = _ffn(layer, x, ctx)
        new_state |= {"keys": torch.stack(keys_out, 1), "values": torch.stack(values_out, 1), "key_keep": key_keep, "key_time": key_time}
        out = fusion.norm(x)  # (B, M, D)
        weights = keep_new.to(out.dtype).unsqueeze(-1)  # (B, M, 1)
        return (out * weights).sum(1) / weights.sum(1).clamp_min(1.0)  # (B, D)


class StreamingScorer:
    """Feeds one window at a time of one stream through a trained model; returns that window's logits (C,).

    Args:
        model: the trained model (eval mode), `WindowAlignedModel` or the core `FusionModel`.
        task: output task name.
        max_context: ring-buffer capacity in windows (see the module docstring).
    """

    def __init__(self, model: nn.Module, task: str = "events", max_context: int = DEFAULT_MAX_CONTEXT) -> None:
        self.module = StreamStep(model, task, max_context)
        self.modalities = self.module.modalities
        self.state = self.module.initial_state(1)
        self.t = 0

    @torch.inference_mode()
    def step(self, window_batch: Any) -> Tensor:
        """Logits (C,) of the next window; ``window_batch`` is a collated `Batch` of one clip and one window."""
        windows = {m: window_batch.inputs[m] for m in self.modalities}
        logits, self.state = self.module(windows, self.state)
        self.t += 1
        return logits[0].float()
