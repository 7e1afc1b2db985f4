"""The pretraining model: mask -> encode visible -> token fusion -> per-modality decoders, L = sum_m lambda_m L_m (+ contrastive)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmapps.data.sample import Batch
from mmapps.models.types import EncoderOutput
from mmapps.pretrain.contract import (
    EncodedModality,
    FusedContext,
    MaskKeys,
    ModalityMask,
    ModalityObjective,
    ModalityTarget,
)

WHOLE_STREAM = 1000  # the generator stream of whole-modality draws (modality streams are 0..M-1)


@dataclass
class PretrainStep:
    """What one forward pass computed (the trainer reads ``total`` and ``parts``; the report the rest)."""

    total: Tensor
    parts: dict[str, Tensor]
    losses: dict[str, Tensor]
    masks: dict[str, ModalityMask] = field(default_factory=dict)
    predictions: dict[str, Tensor] = field(default_factory=dict)
    targets: dict[str, ModalityTarget] = field(default_factory=dict)
    embeddings: dict[str, tuple[Tensor, Tensor]] = field(default_factory=dict)


def hide_whole(masks: dict[str, ModalityMask], optional: set[str], keys: MaskKeys, probability: float) -> None:
    """Whole-modality masking in place: per sample, with `probability`, hide one optional modality entirely.

    A modality is hidden only when another of the sample's modalities keeps a visible unit, and a
    sample whose draws left nothing visible gets its first whole-hidden modality back, so a
    sample never has all of its modalities hidden.
    """
    names = sorted(masks)
    if not names:
        return
    B = next(iter(masks.values())).hidden.shape[0]
    visible = {m: masks[m].visible.any(1).tolist() for m in names}
    for b in range(B):
        if probability > 0:
            rng = keys.rng(b, WHOLE_STREAM)
            if rng.random() < probability:
                candidates = [m for m in names if m in optional and visible[m][b] and any(visible[o][b] for o in names if o != m)]
                if candidates:
                    m = candidates[int(rng.integers(len(candidates)))]
                    masks[m].hidden[b] = masks[m].real[b]
                    masks[m].whole[b] = True
                    visible[m][b] = False
        if not any(visible[m][b] for m in names):
            hidden_whole = [m for m in names if bool(masks[m].whole[b]) and bool(masks[m].real[b].any())]
            if hidden_whole:
                masks[hidden_whole[0]].hidden[b] = False
                masks[hidden_whole[0]].whole[b] = False


class PretrainModel(nn.Module):
    """Wraps a domain model for masked multimodal pretraining.

    Args:
        backbone: the domain's model (its encoders and fusion are trained and transferred).
        encoders: modality -> the module each objective encodes with (submodules of `backbone`).
        fusion: the token fusion (a submodule of `backbone`, or `aux_fusion`).
        aux_fusion: a pretraining-only attention fusion when the model's own gives no tokens, else None.
        objectives: modality -> objective (owns its decoder).
        cfg: the run config (``cfg.pretrain`` holds the weights and options; ``cfg.seed`` keys the masks).
        optional: modalities that may be hidden whole.
    """

    def __init__(self, backbone: nn.Module, encoders: Mapping[str, nn.Module], fusion: nn.Module, aux_fusion: nn.Module | None, objectives: Mapping[str, ModalityObjective], cfg: Any, optional: Sequence[str]) -> None:
        super().__init__()
        self.backbone = backbone
        self.aux_fusion = aux_fusion
        self._encoders = dict(encoders)  # plain dict: the weights are registered under `backbone`
        self._fusion = [fusion]
        self.objectives = nn.ModuleDict(dict(objectives))
        self.modalities = tuple(sorted(objectives))
        self.options = cfg.pretrain
        self.seed = cfg.seed
        self.optional = set(optional)
        self.weights = {m: float(cfg.pretrain.loss_weights.get(m, 1.0)) for m in self.modalities}
        self.register_buffer("trivial", torch.ones(len(self.modalities)))
        self.log_vars = nn.Parameter(torch.zeros(len(self.modalities))) if cfg.pretrain.uncertainty_weighting else None
        contrastive = cfg.pretrain.contrastive_weight > 0 and len(self.modalities) >= 2
        dim = cfg.model.dim
        self.contrast = nn.ModuleDict({m: nn.Linear(_out_dim(encoders[m], dim), dim) for m in self.modalities}) if contrastive else None
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.pretrain.temperature))) if contrastive else None
        self.epoch = 0

    def forward(self, batch: Batch, hide: Sequence[str] = ()) -> PretrainStep:
        keys = MaskKeys(self.seed, self.epoch, tuple(batch.sample_ids))
        inputs = {m: batch.inputs[m] for m in self.modalities if m in batch.inputs and batch.inputs[m].data is not None}
        for m in self.modalities:
            self.objectives[m].bind(batch)
        masks = {m: self.objectives[m].draw(inputs[m], keys, self.modalities.index(m)) for m in inputs}
        hide_whole(masks, self.optional, keys, self.options.whole_modality if self.training else 0.0)
        for m in hide:  # evaluation: the modality hidden for every sample (imputation from the others)
            if m in masks:
                masks[m].hidden, masks[m].whole = masks[m].real.clone(), masks[m].real.any(1)
        encoded = {m: self.objectives[m].encode(self._encoders[m], inputs[m], masks[m]) for m in inputs}
        context = self._fuse(encoded, masks, len(batch))
        step = PretrainStep(torch.zeros((), device=context.tokens.device), {}, {}, masks)
        for m in inputs:
            objective = self.objectives[m]
            target = objective.target(self._encoders[m], inputs[m], masks[m])
            if self.weights[m] == 0:  # lambda_m = 0: no loss term, no gradient; still logged
                with torch.no_grad():
                    prediction = objective.reconstruct(context, masks[m])
            else:
                prediction = objective.reconstruct(context, masks[m])
            step.losses[m] = objective.loss(prediction, target)
            step.predictions[m], step.targets[m] = prediction, target
        self._combine(step, encoded)
        return step

    def _fuse(self, encoded: dict[str, EncodedModality], masks: dict[str, ModalityMask], B: int) -> FusedContext:
        fusion = self._fusion[0]
        names = tuple(getattr(fusion, "modalities", self.modalities))
        reference = next(iter(encoded.values())).output.tokens
        features, present, positions = {}, {}, []
        for m in names:
            if m in encoded:
                features[m] = encoded[m].output
                present[m] = encoded[m].output.token_mask.any(1) & ~masks[m].whole
                positions.append(encoded[m].positions)
            else:  # absent from the whole batch: a fully masked token
                zeros = reference.new_zeros((B, 1, _out_dim(self._encoders.get(m), reference.shape[-1])))
                features[m] = EncoderOutput(zeros, torch.zeros(B, 1, dtype=torch.bool, device=zeros.device), zeros[:, 0])
                present[m] = torch.zeros(B, dtype=torch.bool, device=zeros.device)
                positions.append(torch.full((B, 1), -1, dtype=torch.long, device=zeros.device))
        out = fusion(features, present)
        counts = [features[m].tokens.shape[1] for m in names]
        index = torch.cat([torch.full((n,), i, dtype=torch.long, device=reference.device) for i, n in enumerate(counts)])
        keep = out.token_mask if out.token_mask is not None else torch.cat([features[m].token_mask for m in names], 1)
        span = max([int(mask.hidden.shape[1]) for mask in masks.values()] + [1])
        return FusedContext(out.tokens, keep, index, torch.cat(positions, 1), names, span)

    def _combine(self, step: PretrainStep, encoded: dict[str, EncodedModality]) -> None:
        total = step.total
        for i, m in enumerate(self.modalities):
            if m not in step.losses:
                continue
            value = step.losses[m]
            weight = self.weights[m] / float(self.trivial[i]) if self.options.normalize_by_trivial else self.weights[m]
            step.parts[f"loss/{m}"] = value.detach()
            if self.weights[m] == 0:
                step.parts[f"weight/{m}"] = value.new_zeros(())
                continue
            if self.log_vars is not None:
                precision = torch.exp(-self.log_vars[i])
                total = total + weight * (precision * value + self.log_vars[i])
                step.parts[f"weight/{m}"] = (weight * precision).detach()
            else:
                total = total + weight * value
                step.parts[f"weight/{m}"] = value.new_tensor(weight)
        if self.contrast is not None:
            contrastive = self._contrastive(encoded, step)
            if contrastive is not None:
                total = total + self.options.contrastive_weight * contrastive
                step.parts["loss/contrastive"] = contrastive.detach()
                step.parts["weight/contrastive"] = contrastive.new_tensor(self.options.contrastive_weight)
        step.total = total
        step.parts["loss/total"] = total.detach()

    def _contrastive(self, encoded: dict[str, EncodedModality], step: PretrainStep) -> Tensor | None:
        """Symmetric InfoNCE between each pair of modalities' pooled embeddings (learned temperature)."""
        z = {}
        for m, e in encoded.items():
            if e.pooled is not None:
                valid = e.pooled_valid if e.pooled_valid is not None else torch.ones(e.pooled.shape[0], dtype=torch.bool, device=e.pooled.device)
                z[m] = (F.normalize(self.contrast[m](e.pooled.float()), dim=-1), valid)
        step.embeddings = {m: (v[0].detach(), v[1]) for m, v in z.items()}
        scale = self.logit_scale.clamp(max=math.log(100.0)).exp()
        losses = []
        names = sorted(z)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                both = z[a][1] & z[b][1]
                if int(both.sum()) < 2:
                    continue
                logits = scale * z[a][0][both] @ z[b][0][both].T  # (n, n)
                labels = torch.arange(logits.shape[0], device=logits.device)
                losses.append(0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)))
        return torch.stack(losses).mean() if losses else None


def _out_dim(encoder: nn.Module | None, default: int) -> int:
    return int(getattr(encoder, "out_dim", default)) if encoder is not None else default
