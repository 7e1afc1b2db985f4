"""Which objective each modality gets: the domain hook, the encoder's own declaration, or the core kind."""

from __future__ import annotations

from typing import Any

from torch import nn

from mmapps.domain import ModalitySpec
from mmapps.errors import ConfigError
from mmapps.pretrain.contract import ModalityObjective

# Default share of units hidden per objective kind (MAE/SparK 0.6-0.75, VideoMAE/AudioMAE higher; BERT 0.15).
DEFAULT_RATIOS = {"image": 0.6, "note": 0.5, "tokens": 0.15, "time": 0.6, "signal": 0.5, "columns": 0.3}
CORE_ENCODERS = "image_cnn, text_transformer, audio_cnn, video_cnn, signal_resnet1d, tabular_mlp, features_mlp, identity"


def _first_conv_channels(module: nn.Module) -> int:
    for sub in module.modules():
        if isinstance(sub, (nn.Conv2d, nn.Conv1d)):
            return sub.in_channels
    raise ValueError("no convolution found")


def core_objective(name: str, encoder: nn.Module, spec: ModalitySpec, cfg: Any, context_dim: int, modalities: tuple[str, ...]) -> ModalityObjective:
    """The core objective of `encoder`'s class for modality `name`.

    Raises:
        ConfigError: the encoder is not a core kind and declares no ``pretrain_objective``.
    """
    from mmapps.models.encoders.audio import AudioCnnEncoder
    from mmapps.models.encoders.image import ImageCnnEncoder
    from mmapps.models.encoders.signal import SignalResNet1dEncoder
    from mmapps.models.encoders.tabular import (
        FeaturesMlpEncoder,
        IdentityEncoder,
        TabularMlpEncoder,
    )
    from mmapps.models.encoders.text import TextTransformerEncoder
    from mmapps.models.encoders.video import VideoCnnEncoder

    pre = cfg.pretrain
    dim = pre.decoder_dim or cfg.model.dim
    decoder = {"decoder_dim": dim, "layers": pre.decoder_layers, "heads": pre.decoder_heads}
    ratio = lambda kind: pre.mask_ratio.get(name, DEFAULT_RATIOS[kind])
    common = {"context_dim": context_dim, "modalities": modalities, "modality": name, **decoder}
    if isinstance(encoder, ImageCnnEncoder):
        from mmapps.pretrain.image import SparkImageObjective

        return SparkImageObjective(encoder, ratio=ratio("image"), in_channels=_first_conv_channels(encoder.trunk), **common)
    if isinstance(encoder, TextTransformerEncoder):
        from mmapps.pretrain.text import FrozenNoteObjective, MaskedTokenObjective

        if encoder.finetune == "frozen":
            return FrozenNoteObjective(encoder, ratio=ratio("note"), target=pre.frozen_text_target, **common)
        return MaskedTokenObjective(encoder, ratio=ratio("tokens"), **common)
    if isinstance(encoder, TabularMlpEncoder):
        from mmapps.pretrain.tabular import MaskedColumnObjective

        return MaskedColumnObjective(encoder.mlp[0].in_features // 2, ratio=ratio("columns"), **common)
    from mmapps.pretrain.sequence import POOL, SignalTimeObjective, TimeUnitObjective

    if isinstance(encoder, SignalResNet1dEncoder):
        return SignalTimeObjective(encoder, ratio=ratio("signal"), block=pre.block, **common)
    time = {"ratio": ratio("time"), "block": pre.block, **common}
    if isinstance(encoder, AudioCnnEncoder):
        return TimeUnitObjective("audio", encoder, out_dim=encoder.melspec.n_mels * 4, **time)
    if isinstance(encoder, VideoCnnEncoder):
        return TimeUnitObjective("video", encoder, out_dim=2 * _first_conv_channels(encoder.trunk) * POOL * POOL, **time)
    if isinstance(encoder, FeaturesMlpEncoder):
        return TimeUnitObjective("features", encoder, out_dim=encoder.proj[0].normalized_shape[0], **time)
    if isinstance(encoder, IdentityEncoder):
        return TimeUnitObjective("features", encoder, out_dim=encoder.out_dim, **time)
    raise ConfigError(
        f"pretrain: modality {name!r} ({spec.kind}) uses encoder {type(encoder).__name__}, which has no core masking objective "
        f"(core: {CORE_ENCODERS}) and declares none; give the encoder a method pretrain_objective(spec, cfg, dim) or the domain "
        "a Domain.pretrain hook returning PretrainParts(objectives=...) (docs/pretraining.md#the-plugin-hook)"
    )


def objective_for(name: str, encoder: nn.Module, spec: ModalitySpec, cfg: Any, context_dim: int, modalities: tuple[str, ...]) -> ModalityObjective:
    """The encoder's own ``pretrain_objective`` when it has one, else the core objective of its class."""
    declared = getattr(encoder, "pretrain_objective", None)
    if callable(declared):
        objective = declared(spec, cfg, cfg.pretrain.decoder_dim or cfg.model.dim)
        if not isinstance(objective, ModalityObjective):
            raise ConfigError(f"pretrain: {type(encoder).__name__}.pretrain_objective for modality {name!r} returned {type(objective).__name__}, expected a mmapps.pretrain.contract.ModalityObjective")
        return objective
    return core_objective(name, encoder, spec, cfg, context_dim, modalities)
