"""The core `FusionModel` as a graph: every modality an input, presence as masking, no Python branch on data.

Eager `FusionModel` decides in Python which encoders run (``_encode`` skips a modality absent from
the whole batch, ``select(present)`` narrows presence, the image encoder runs only the real images
of each study). An exported graph cannot branch on data, so `FusionGraph` always runs every
encoder on full-shape inputs and turns those decisions into masks:

- values of absent samples and padded elements are replaced by zeros *before* an encoder sees them
  (``torch.where``, so even NaN or huge values in an absent slot change nothing);
- every encoder's token mask is ANDed with the modality's presence, exactly as eager does;
- the fusion and the heads are the eager modules, called the same way.

The fusions only read an absent modality through its mask, so the graph's outputs equal eager's
for the same inputs (tested for every registered fusion and every subset of present modalities).

Encoders get a graph forward from `GRAPH_ENCODERS` (the core image and text encoders), from their
own ``export_forward(mb: ModalityBatch) -> EncoderOutput`` method (third-party encoders), or else
their ``forward`` is traced as is (it must then hold no data-dependent Python branch).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mmapps.data.sample import ModalityBatch
from mmapps.export.spec import BATCH_AXIS, TensorSpec
from mmapps.models.types import EncoderOutput


def graph_masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """`mmapps.models.pooling.masked_mean` that ignores non-finite values under a False mask."""
    weights = mask.unsqueeze(-1)  # (B, T, 1)
    total = torch.where(weights, x, torch.zeros_like(x)).sum(1)
    return total / weights.to(x.dtype).sum(1).clamp_min(1.0)


def _image_graph(encoder: nn.Module, mb: ModalityBatch) -> EncoderOutput:
    images = mb.data if mb.data.dim() == 5 else mb.data.unsqueeze(1)  # (B, E, C, H, W)
    B, E = images.shape[:2]
    keep = mb.present.unsqueeze(1) if mb.mask is None else mb.mask & mb.present.unsqueeze(1)  # (B, E) or (B, 1)
    keep = keep.expand(B, E)
    fmap = encoder.proj(encoder.trunk(images.flatten(0, 1).float()))  # (B*E, D, h, w): every slot runs
    D, h, w = fmap.shape[1:]
    fmap = torch.where(keep.reshape(B * E, 1, 1, 1), fmap, torch.zeros_like(fmap)).view(B, E, D, h, w)
    tokens = fmap.flatten(3).transpose(2, 3).reshape(B, E * h * w, D)  # (B, E*h*w, D)
    token_mask = keep.repeat_interleave(h * w, dim=1)  # (B, E*h*w)
    return EncoderOutput(tokens, token_mask, graph_masked_mean(tokens, token_mask), fmap[:, 0])


def _text_graph(encoder: nn.Module, mb: ModalityBatch) -> EncoderOutput:
    """Token ids (B, L) and attention mask (B, L) -> tokens; the tokenizer runs outside the graph."""
    ids, attention = mb.data, mb.mask
    keep = attention & mb.present.unsqueeze(1)  # (B, L)
    L = ids.shape[1]
    first = torch.arange(L, device=ids.device).unsqueeze(0) == 0  # (1, L)
    # an absent or empty row still attends to its first position, so no softmax row is empty (NaN)
    hidden = encoder.backbone(input_ids=torch.where(keep, ids, torch.zeros_like(ids)), attention_mask=(keep | first).to(torch.int64)).last_hidden_state
    tokens = encoder.proj(hidden.float())  # (B, L, D)
    return EncoderOutput(tokens, keep, graph_masked_mean(tokens, keep))


def _register_core() -> dict[type, Callable[[nn.Module, ModalityBatch], EncoderOutput]]:
    from mmapps.models.encoders.image import ImageCnnEncoder
    from mmapps.models.encoders.text import TextTransformerEncoder

    return {ImageCnnEncoder: _image_graph, TextTransformerEncoder: _text_graph}


GRAPH_ENCODERS: dict[type, Callable[[nn.Module, ModalityBatch], EncoderOutput]] = {}


def graph_encode(encoder: nn.Module, mb: ModalityBatch) -> EncoderOutput:
    """One encoder's graph-mode forward (see the module docstring for the lookup order)."""
    if not GRAPH_ENCODERS:
        GRAPH_ENCODERS.update(_register_core())
    for cls in type(encoder).__mro__:
        if cls in GRAPH_ENCODERS:
            return GRAPH_ENCODERS[cls](encoder, mb)
    if hasattr(encoder, "export_forward"):
        return encoder.export_forward(mb)
    return encoder(mb)


def sanitise(data: Tensor, keep: Tensor) -> Tensor:
    """Zero `data` (B, E, ...) or (B, ...) wherever `keep` (B, E) or (B,) is False."""
    shape = tuple(keep.shape) + (1,) * (data.dim() - keep.dim())
    return torch.where(keep.reshape(shape), data, torch.zeros_like(data))


class FusionGraph(nn.Module):
    """`FusionModel` with flat tensor inputs (in `inputs` order) and one output per task (in `outputs` order).

    Args:
        model: an eval-mode `mmapps.models.fusion_model.FusionModel`.
        inputs: the graph inputs (`mmapps.export.fusion_io.fusion_inputs`).
        tasks: task names, the order of the outputs.
    """

    def __init__(self, model: nn.Module, inputs: Sequence[TensorSpec], tasks: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.input_names = [s.name for s in inputs]
        self.roles = {(s.modality, s.role): i for i, s in enumerate(inputs)}
        self.tasks = list(tasks)

    def modality_batches(self, values: Sequence[Tensor]) -> dict[str, ModalityBatch]:
        batches = {}
        for m in self.model.modalities:
            get: Callable[[str], Any] = lambda role, m=m: values[self.roles[(m, role)]] if (m, role) in self.roles else None
            present = get("present")
            if (m, "input_ids") in self.roles:
                batches[m] = ModalityBatch(get("input_ids"), present, get("attention_mask").bool())
                continue
            mask, offsets = get("mask"), get("offsets")
            data = get("data")
            if offsets is None:
                data = sanitise(data, mask & present.unsqueeze(1) if mask is not None else present)
            batches[m] = ModalityBatch(data, present, mask, offsets)
        return batches

    def forward(self, *values: Tensor) -> tuple[Tensor, ...]:
        model = self.model
        batches = self.modality_batches(values)
        present = {m: batches[m].present for m in model.modalities}
        features = {m: graph_encode(model.encoders[m], batches[m]) for m in model.modalities}
        if getattr(model.fusion, "level", "features") == "predictions":
            outputs = model._late(features, present)
        else:
            fused = model._fuse(features, present)
            outputs = {task: head(fused) for task, head in model.heads.items()}
        return tuple(outputs[t] for t in self.tasks)


def dynamic_shapes(inputs: Sequence[TensorSpec]) -> dict[str, dict[int, Any]]:
    """`torch.export` dynamic shapes: one `Dim` per symbol, shared by every input that names it."""
    from torch.export import Dim

    dims: dict[str, Any] = {}
    shapes: dict[str, dict[int, Any]] = {}
    for spec in inputs:
        axes = {}
        for i, axis in enumerate(spec.shape):
            if isinstance(axis, str):
                if axis not in dims:
                    dims[axis] = Dim(axis.replace("-", "_"), min=1, max=2**20) if axis != BATCH_AXIS else Dim(BATCH_AXIS, min=1, max=2**16)
                axes[i] = dims[axis]
        shapes[spec.name] = axes
    return shapes
