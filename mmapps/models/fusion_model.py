"""The core model: encoders (one per modality) -> fusion -> one head per task."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mmapps.data.sample import Batch
from mmapps.models.types import EncoderOutput, FusionOutput


class FusionModel(nn.Module):
    """``encoders[m](batch.inputs[m]) -> fusion -> heads[task]``; returns ``{task: output}``.

    Feature-level fusions produce one joint representation for all heads. Prediction-level fusion
    (``fusion.level == "predictions"``, i.e. late fusion) gives each modality its own heads and
    combines their outputs per task.

    Args:
        encoders: modality -> encoder (sorted iteration; results never depend on dict order).
        fusion: a registered fusion module.
        heads: task -> head, or task -> (modality -> head) for prediction-level fusion.
        per_timestep: fuse each time step of time-aligned tokens (B, T, D).
        modality_dropout: training-time probability of hiding a present modality per sample
            (at least one modality is always kept).
    """

    def __init__(self, encoders: nn.ModuleDict, fusion: nn.Module, heads: nn.ModuleDict, per_timestep: bool = False, modality_dropout: float = 0.0) -> None:
        super().__init__()
        self.encoders = encoders
        self.fusion = fusion
        self.heads = heads
        self.per_timestep = per_timestep
        self.modality_dropout = modality_dropout
        self.modalities = sorted(encoders.keys())

    def forward(self, batch: Batch) -> dict[str, Any]:
        present = {m: batch.inputs[m].present for m in self.modalities}
        if self.training and self.modality_dropout > 0:
            present = drop_modalities(present, self.modality_dropout)
        features = self._encode(batch, present)
        if getattr(self.fusion, "level", "features") == "predictions":
            return self._late(features, present)
        fused = self._fuse(features, present)
        return {task: head(fused) for task, head in self.heads.items()}

    def _encode(self, batch: Batch, present: dict[str, Tensor]) -> dict[str, EncoderOutput]:
        encoded = {m: self.encoders[m](batch.inputs[m].select(present[m])) for m in self.modalities if batch.inputs[m].data is not None}
        if len(encoded) == len(self.modalities):
            return encoded
        if not encoded:
            raise ValueError("every modality is absent from this batch: nothing to predict from")
        reference = next(iter(encoded.values()))
        B, T = reference.tokens.shape[:2] if self.per_timestep else (reference.tokens.shape[0], 1)
        for m in self.modalities:
            if m not in encoded:  # absent from the whole batch: a fully masked output, encoder not run
                zeros = reference.tokens.new_zeros((B, T, self.encoders[m].out_dim))
                encoded[m] = EncoderOutput(zeros, torch.zeros(B, T, dtype=torch.bool, device=zeros.device), zeros[:, 0])
        return encoded

    def _fuse(self, features: dict[str, EncoderOutput], present: dict[str, Tensor]) -> FusionOutput:
        if not self.per_timestep or getattr(self.fusion, "per_timestep", False):
            return self.fusion(features, present)
        # Sample-level fusions run per time step on (B*T) rows; a row is present where the
        # modality is present and its time step is real.
        B, T = next(iter(features.values())).tokens.shape[:2]
        rows = {m: _timestep_rows(f) for m, f in features.items()}
        row_present = {m: (features[m].token_mask & present[m].unsqueeze(1)).reshape(B * T) for m in features}
        fused = self.fusion(rows, row_present)
        pooled = fused.pooled.view(B, T, -1)  # (B, T, D)
        step_mask = torch.stack(list(row_present.values()), 0).any(0).view(B, T)
        return FusionOutput(pooled, pooled, step_mask)

    def _late(self, features: dict[str, EncoderOutput], present: dict[str, Tensor]) -> dict[str, Tensor]:
        outputs = {}
        for task, per_modality in self.heads.items():
            predictions = {}
            for m in self.modalities:
                f = features[m]
                rep = FusionOutput(f.tokens) if self.per_timestep else FusionOutput(f.pooled)
                predictions[m] = per_modality[m](rep)
            mask = {m: (features[m].token_mask & present[m].unsqueeze(1)) if self.per_timestep else present[m] for m in self.modalities}
            outputs[task] = self.fusion(predictions, mask)
        return outputs


def _timestep_rows(f: EncoderOutput) -> EncoderOutput:
    B, T, D = f.tokens.shape
    flat = f.tokens.reshape(B * T, D)  # (B*T, D)
    return EncoderOutput(flat.unsqueeze(1), f.token_mask.reshape(B * T, 1), flat)


def drop_modalities(present: dict[str, Tensor], p: float) -> dict[str, Tensor]:
    """Hide each present modality with probability `p` per sample, never hiding all of a sample's."""
    names = sorted(present)
    stacked = torch.stack([present[m] for m in names], dim=1)  # (B, M)
    dropped = stacked & (torch.rand(stacked.shape, device=stacked.device) >= p)
    empty = ~dropped.any(1) & stacked.any(1)
    if empty.any():  # restore one originally present modality at random for those samples
        scores = torch.rand(stacked.shape, device=stacked.device).masked_fill(~stacked, -1.0)
        restore = torch.zeros_like(stacked).scatter_(1, scores.argmax(1, keepdim=True), True)
        dropped = torch.where(empty.unsqueeze(1), restore, dropped)
    return {m: dropped[:, i] for i, m in enumerate(names)}
