"""The pretraining plugin contract: how a modality is masked, what it reconstructs, where its encoder is.

Every modality of a pretraining run gets one `ModalityObjective`: an ``nn.Module`` that draws the
mask of a batch (`draw`), encodes the visible part with the modality's encoder (`encode`), computes
the reconstruction target from the *input* (`target`, a fixed function of the input or of frozen
features, never of the online encoder), predicts it from the fused tokens with its light decoder
(`reconstruct`) and scores the prediction (`loss`). The decoder lives in the objective, so it is
saved apart and discarded after pretraining.

Where a modality's objective comes from, first match wins:

1. the domain's hook: ``Domain.pretrain`` (a lazy ``"module:attribute"`` reference) names a function
   ``pretrain(cfg, domain, model) -> PretrainParts``; its ``objectives`` give objectives for some or
   all modalities, its ``encoders`` and ``fusion`` say how a custom ``build_model``'s encoders and
   token fusion are reached (the core `FusionModel` needs no hook: ``model.encoders`` and
   ``model.fusion``);
2. the encoder itself: an encoder with a method ``pretrain_objective(spec, cfg, dim) ->
   ModalityObjective`` (``spec`` the `mmapps.domain.ModalitySpec`, ``dim`` the decoder width)
   declares its own masking unit and target, so a plugin's encoder joins without core edits;
3. the core objective of the encoder's class (`mmapps.pretrain.kinds`): ``image_cnn`` (SparK
   masked input), ``text_transformer`` (frozen: whole note hidden, frozen token features; trained:
   masked tokens tied to the word embeddings), ``audio_cnn`` / ``video_cnn`` (blocks of windows or
   time steps), ``signal_resnet1d`` (time blocks at the encoder's stride), ``tabular_mlp`` (masked
   columns), ``features_mlp`` / ``identity`` (masked time steps).

A modality none of these covers is a `mmapps.errors.ConfigError` naming the encoder class.

The shapes an objective exchanges (B samples, U mask units of the modality, P target values per
unit, T encoder tokens, D width):

- `ModalityMask`: ``hidden (B, U)`` bool (True = hidden from the encoder, where the loss counts),
  ``real (B, U)`` bool (False on padding), ``whole (B,)`` (the modality is hidden entirely).
- `encode` returns an `EncodedModality`: the encoder's `EncoderOutput` whose ``token_mask`` is
  False on every token that carries hidden content (the fusion never sees it), the unit index of
  each token (``positions (B, T)`` long, -1 for tokens without a unit position), and an optional
  pooled embedding for the contrastive term.
- `ModalityTarget`: ``values (B, U, P)`` and ``weight (B, U)`` (1 where the loss counts).
- `reconstruct(context, mask)`: ``context`` is the `FusedContext` (all modalities' fused visible
  tokens, their modality index and unit positions); returns the prediction ``(B, U, P)``.

Mask draws must come from ``keys.generator(b, stream)`` (or ``keys.rng``): a pure function of
(seed, sample id, epoch), so masks are reproducible and a resumed run draws the same masks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mmapps.data.rng import sample_rng, sample_torch_generator
from mmapps.data.sample import ModalityBatch
from mmapps.models.types import EncoderOutput

__all__ = ["EncodedModality", "FusedContext", "MaskKeys", "ModalityMask", "ModalityObjective", "ModalityTarget", "PretrainParts", "sample_key"]


def sample_key(sample_id: str) -> int:
    """A stable 63-bit integer for a sample id (the same in every process, run and Python version)."""
    return int.from_bytes(hashlib.sha256(sample_id.encode()).digest()[:8], "little") >> 1


@dataclass(frozen=True)
class MaskKeys:
    """What a mask draw is keyed on: the run seed, the epoch and each sample's id.

    ``stream`` separates modalities (and uses within one), so two modalities' draws are independent.
    """

    seed: int
    epoch: int
    sample_ids: tuple[str, ...]

    def rng(self, b: int, stream: int) -> np.random.Generator:
        return sample_rng(self.seed, self.epoch, sample_key(self.sample_ids[b]), stream)

    def generator(self, b: int, stream: int) -> torch.Generator:
        return sample_torch_generator(self.seed, self.epoch, sample_key(self.sample_ids[b]), stream)


@dataclass
class ModalityMask:
    """Which mask units of a modality are hidden, per sample.

    Attributes:
        hidden: (B, U) bool, True = hidden from the encoder.
        real: (B, U) bool, False on padding and on absent samples.
        whole: (B,) bool, the modality is hidden entirely for that sample.
        grid: the unit layout (e.g. ``(E, h, w)`` for images, ``(T,)`` for sequences).
        extra: objective-specific values (e.g. masked token ids).
    """

    hidden: Tensor
    real: Tensor
    whole: Tensor
    grid: tuple[int, ...]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def visible(self) -> Tensor:
        return self.real & ~self.hidden


@dataclass
class EncodedModality:
    """An objective's encoding of the visible part of a modality.

    Attributes:
        output: the encoder's output; ``token_mask`` False on tokens carrying hidden content.
        positions: (B, T) long unit index of each token, -1 where a token has no unit position.
        pooled: (B, D) embedding for the contrastive term, or None.
        pooled_valid: (B,) bool where ``pooled`` means something.
    """

    output: EncoderOutput
    positions: Tensor
    pooled: Tensor | None = None
    pooled_valid: Tensor | None = None


@dataclass
class ModalityTarget:
    """A reconstruction target: ``values (B, U, P)`` and ``weight (B, U)`` (where the loss counts)."""

    values: Tensor
    weight: Tensor


@dataclass
class FusedContext:
    """The fused visible tokens of every modality, for the decoders.

    Attributes:
        tokens: (B, N, D) fused tokens of all modalities (sorted order), concatenated.
        keep: (B, N) bool, True for real, visible tokens.
        modality: (N,) long index of each token's modality (sorted order).
        positions: (B, N) long unit index of each token within its modality, -1 when none.
        modalities: the modality names, sorted.
        span: one more than the largest unit position of any modality (positional tables' size).
    """

    tokens: Tensor
    keep: Tensor
    modality: Tensor
    positions: Tensor
    modalities: tuple[str, ...]
    span: int = 1


class ModalityObjective(nn.Module):
    """One modality's masked-modelling objective (see the module docstring for the contract).

    Attributes a subclass sets: ``unit`` (a few words naming the mask unit, shown in the report),
    ``target_name`` (what is reconstructed), ``ratio`` (share of units hidden) and ``loss_kind``
    (``mse`` or ``ce``; the trivial predictor of ``mse`` is the per-position mean).
    """

    unit: str = "unit"
    target_name: str = "input"
    loss_kind: str = "mse"
    ratio: float = 0.5

    def bind(self, batch: Any) -> None:
        """Called with the whole `mmapps.data.Batch` before `draw`, every step. Default: nothing.

        For objectives whose encoding needs more than their own modality: per-sample metadata
        (e.g. the driving LiDAR's camera projection matrices in ``batch.meta``) or another modality
        (camera painting of LiDAR points).
        """

    def draw(self, mb: ModalityBatch, keys: MaskKeys, stream: int) -> ModalityMask:
        """The batch's mask; random numbers only from ``keys`` (reproducible from seed, id, epoch)."""
        raise NotImplementedError

    def encode(self, encoder: nn.Module, mb: ModalityBatch, mask: ModalityMask) -> EncodedModality:
        """Encode with hidden content removed *before* the first layer that mixes units."""
        raise NotImplementedError

    def target(self, encoder: nn.Module, mb: ModalityBatch, mask: ModalityMask) -> ModalityTarget:
        """The reconstruction target: a fixed function of the input (or of frozen features)."""
        raise NotImplementedError

    def reconstruct(self, context: FusedContext, mask: ModalityMask) -> Tensor:
        """The decoder's prediction (B, U, P) of every unit from the fused visible tokens."""
        raise NotImplementedError

    def loss(self, prediction: Tensor, target: ModalityTarget) -> Tensor:
        """Scalar loss over the units where ``target.weight`` > 0 (0 when there are none)."""
        weight = target.weight.to(prediction.dtype)
        per_unit = ((prediction.float() - target.values.float()) ** 2).mean(-1)  # (B, U)
        return (per_unit * weight).sum() / weight.sum().clamp_min(1.0)

    def render(self, mb: ModalityBatch, mask: ModalityMask, prediction: Tensor, target: ModalityTarget, index: int) -> dict[str, np.ndarray] | None:
        """Optional pictures for the report: name -> 2-D array (original / masked / reconstructed)."""
        return None


@dataclass
class PretrainParts:
    """What a domain's ``Domain.pretrain`` hook returns for its model.

    Attributes:
        encoders: modality -> the module its objective's ``encode`` receives (for a custom model,
            e.g. the lidar branch of a detector); None = ``model.encoders``.
        fusion: the token fusion visible tokens go through, called as ``fusion(features, present)``
            returning a `FusionOutput` with ``tokens``; None = ``model.fusion`` (when it returns
            tokens), else a new attention fusion used only while pretraining.
        objectives: modality -> objective; modalities left out get the core objective of their
            encoder (or the encoder's ``pretrain_objective``).
        transferred: names of the model's submodules (``model.named_modules()``) whose weights a
            pretraining run saves for ``train --init``; None = the encoders and fusion above.
    """

    encoders: Mapping[str, nn.Module] | None = None
    fusion: nn.Module | None = None
    objectives: Mapping[str, ModalityObjective] = field(default_factory=dict)
    transferred: tuple[str, ...] | None = None
