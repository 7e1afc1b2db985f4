"""Surveillance pretraining: blocks of windows hidden per modality, a causal decoder, window targets.

Every surveillance encoder turns one time window into one token (windows are encoded alone, see
`encoders` and the core ``video_cnn``), so hidden content is dropped *per window before the
encoder*: only the visible windows of a batch are encoded (as one packed batch, so batch-norm
statistics come from visible windows only), and their tokens go through the model's own causal
fusion. Per modality (``Domain.pretrain`` hook, see `mmapps.pretrain.contract`):

- audio: hidden windows' log-mel (n_mels x mel_frames), as cached;
- video: hidden windows' frames and motion channel(s), average-pooled to 8 x 8 per frame;
- chat: hidden windows' MiniLM message vector (frozen features) and message count, counted only
  in windows that hold messages (an empty window's zero vector says nothing to reconstruct);
- features: hidden windows' pre-extracted feature vector.

The decoder is causal (`pretrain_decoder.CausalWindowDecoder`). The core settings apply:
``pretrain.mask_ratio.<modality>`` (share of real windows hidden, default 0.6), ``pretrain.block``
(windows per hidden block, 2), ``pretrain.decoder_layers``. Domain options (``pretrain.options``):
``lookahead`` (decoder look-ahead in windows, 0), ``next_window`` (add next-window prediction),
``next_window_weight`` (1.0), ``video_pool`` (8).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn
from torch.nn import functional as F

from mmapps.data.sample import ModalityBatch
from mmapps.models.pooling import masked_mean
from mmapps.models.types import EncoderOutput
from mmapps.pretrain.contract import EncodedModality, FusedContext, MaskKeys, ModalityMask, ModalityObjective, ModalityTarget, PretrainParts
from mmapps.pretrain.masking import draw_units

from mmapps_domains.surveillance.pretrain_decoder import CausalWindowDecoder


class SurveillancePretrainOptions(BaseModel):
    """``pretrain.options`` of the surveillance domain (validated; unknown keys refused)."""

    model_config = ConfigDict(extra="forbid")
    lookahead: int = Field(0, ge=0, description="decoder look-ahead in windows: window t is reconstructed from windows <= t + lookahead")
    next_window: bool = Field(False, description="also predict the first unseen window from each window's decoder output")
    next_window_weight: float = Field(1.0, ge=0, description="weight of the next-window term inside each modality's loss")
    video_pool: int = Field(8, ge=1, description="video target: frames and motion average-pooled to video_pool x video_pool")


def encode_visible_windows(encoder: nn.Module, mb: ModalityBatch, visible: Tensor) -> EncoderOutput:
    """Encode only the visible windows (B, T) as one packed clip; hidden windows get zero tokens.

    The encoder never reads a hidden window, and its batch-norm statistics (``video_cnn``) come
    from visible windows only.
    """
    B, T = visible.shape
    rows = visible.reshape(-1).nonzero().squeeze(1)  # (N,)
    dim = encoder.out_dim
    tokens = mb.data.new_zeros(B * T, dim).float()
    if rows.numel():
        packed = mb.data.reshape((B * T,) + tuple(mb.data.shape[2:]))[rows].unsqueeze(0)  # (1, N, ...)
        one = torch.ones(1, dtype=torch.bool, device=visible.device)
        out = encoder(ModalityBatch(packed, one, torch.ones(1, rows.numel(), dtype=torch.bool, device=visible.device)))
        tokens = tokens.to(out.tokens.dtype).index_copy(0, rows, out.tokens[0])
    tokens = tokens.view(B, T, dim)  # (B, T, D)
    return EncoderOutput(tokens, visible, masked_mean(tokens, visible))


def audio_target(data: Tensor) -> Tensor:
    """(B, T, n_mels, frames) log-mel -> (B, T, n_mels * frames)."""
    return data.float().flatten(2)


def video_target(pool: int) -> Callable[[Tensor], Tensor]:
    def target(data: Tensor) -> Tensor:
        """(B, T, F, C, H, W) frames + motion -> (B, T, F * C * pool * pool) block averages."""
        B, T, Fr, C, H, W = data.shape
        pooled = F.adaptive_avg_pool2d(data.float().reshape(B * T * Fr, C, H, W), pool)  # (B*T*F, C, p, p)
        return pooled.reshape(B, T, -1)
    return target


def vector_target(data: Tensor) -> Tensor:
    """(B, T, F) per-window vectors (chat, features) as they are."""
    return data.float()


class WindowTarget(ModalityTarget):
    """A `ModalityTarget` with the weight of the next-window term (B, T) (None: the option is off)."""

    def __init__(self, values: Tensor, weight: Tensor, next_weight: Tensor | None = None) -> None:
        super().__init__(values, weight)
        self.next_weight = next_weight


class WindowBlockObjective(ModalityObjective):
    """Blocks of windows hidden before the encoder; the causal decoder reconstructs each window's target.

    Args:
        target_fn: (B, T, ...) modality data -> (B, T, P) target.
        target_dim: P.
        dim: fused token width.
        options: the validated `SurveillancePretrainOptions`.
        ratio: share of the clip's real windows hidden; block: windows per hidden block.
        decoder_layers: causal decoder depth.
        fusion_lookahead: the fusion's look-ahead (the next-window head forecasts past it too).
        needs_messages: count the loss only in windows whose last feature (chat's log message count) is > 0.
    """

    unit = "block of time windows"

    def __init__(self, target_fn: Callable[[Tensor], Tensor], target_dim: int, dim: int, options: SurveillancePretrainOptions, target_name: str,
                 ratio: float = 0.6, block: int = 2, decoder_layers: int = 1, fusion_lookahead: int = 0, needs_messages: bool = False) -> None:
        super().__init__()
        self.target_fn, self.target_name, self.ratio, self.block = target_fn, target_name, ratio, block
        self.needs_messages = needs_messages
        self.next_weight = options.next_window_weight if options.next_window else 0.0
        self.shift = 1 + options.lookahead + fusion_lookahead  # first window the output at t has not seen
        self.decoder = CausalWindowDecoder(dim, target_dim, decoder_layers, lookahead=options.lookahead, next_window=options.next_window)
        self.target_dim = target_dim
        # per-dimension target standardisation, fitted on the pool before training (`fit_statistics`): a
        # decoder starting at 0 then starts at the mean predictor instead of hundreds of steps away from it
        self.register_buffer("target_mean", torch.zeros(target_dim))
        self.register_buffer("target_std", torch.ones(target_dim))
        self.picture: Callable[[Tensor], Tensor] | None = None  # how `render` draws a clip's targets (audio, video)

    def fit_statistics(self, batches: list[ModalityBatch]) -> None:
        """Mean and standard deviation of every target value over the counted windows of the pool's first batches."""
        rows = []
        for mb in batches:
            if mb.data is None:
                continue
            values = self.target_fn(mb.data)  # (B, T, P)
            counted = mb.mask & mb.present.unsqueeze(1)
            rows.append(values[counted & (values[..., -1] > 0) if self.needs_messages else counted])
        if rows and sum(r.shape[0] for r in rows) > 1:
            values = torch.cat(rows)
            self.target_mean.copy_(values.mean(0))
            std = values.std(0)
            # a floor relative to the typical spread: near-constant dimensions (still motion, silent bands) would
            # otherwise be blown up on held-out clips
            self.target_std.copy_(std.clamp_min(0.1 * float(std.mean()) + 1e-6))

    def draw(self, mb: ModalityBatch, keys: MaskKeys, stream: int) -> ModalityMask:
        real = mb.mask & mb.present.unsqueeze(1)  # (B, T)
        hidden = draw_units(real, keys, stream, self.ratio, self.block)
        return ModalityMask(hidden, real, torch.zeros(real.shape[0], dtype=torch.bool, device=real.device), (real.shape[1],))

    def encode(self, encoder: nn.Module, mb: ModalityBatch, mask: ModalityMask) -> EncodedModality:
        visible = mask.visible & ~mask.whole.unsqueeze(1)
        out = encode_visible_windows(encoder, mb, visible)
        positions = torch.arange(visible.shape[1], device=visible.device).expand(visible.shape[0], -1)
        return EncodedModality(out, positions, out.pooled, visible.any(1))

    def target(self, encoder: nn.Module, mb: ModalityBatch, mask: ModalityMask) -> ModalityTarget:
        raw = self.target_fn(mb.data)  # (B, T, P)
        counted = mask.real & (raw[..., -1] > 0) if self.needs_messages else mask.real
        values = (raw - self.target_mean) / self.target_std
        hidden = mask.hidden | (mask.whole.unsqueeze(1) & mask.real)
        next_weight = None
        if self.next_weight > 0:
            next_weight = counted.clone()
            next_weight[:, : self.shift] = False  # no decoder output precedes these windows by `shift`
        return WindowTarget(values, (hidden & counted).float(), next_weight)

    def reconstruct(self, context: FusedContext, mask: ModalityMask) -> Tensor:
        hidden = mask.hidden | (mask.whole.unsqueeze(1) & mask.real)
        return self.decoder(context, hidden, mask.real)

    def render(self, mb: ModalityBatch, mask: ModalityMask, prediction: Tensor, target: ModalityTarget, index: int) -> dict[str, np.ndarray] | None:
        if self.picture is None or not bool(mask.real[index].any()):
            return None
        return render_windows(target.values[index], mask.hidden[index], prediction[index, :, : self.target_dim], mask.real[index], self.picture)

    def loss(self, prediction: Tensor, target: ModalityTarget) -> Tensor:
        P = self.target_dim
        loss = super().loss(prediction[..., :P], ModalityTarget(target.values, target.weight))
        next_weight = getattr(target, "next_weight", None)
        if next_weight is None or prediction.shape[-1] == P:
            return loss
        forecast = F.pad(prediction[:, : prediction.shape[1] - self.shift, P:], (0, 0, self.shift, 0))  # (B, T, P): made at t - shift
        return loss + self.next_weight * super().loss(forecast, ModalityTarget(target.values, next_weight.float()))


def render_windows(values: Tensor, hidden: Tensor, prediction: Tensor, real: Tensor, image_of: Callable[[Tensor], Tensor]) -> dict[str, np.ndarray]:
    """Original / hidden windows blanked / hidden windows reconstructed, as one 2-D picture of the clip's windows."""
    n = int(real.sum())
    original, predicted = image_of(values[:n].float()), image_of(prediction[:n].float())  # (rows, n * width)
    width = original.shape[1] // max(n, 1)
    holes = hidden[:n].repeat_interleave(width).unsqueeze(0).expand_as(original)
    as_np = lambda t: t.detach().cpu().numpy()  # noqa: E731
    return {"original": as_np(original), "masked": as_np(original.masked_fill(holes, float("nan"))),
            "reconstructed": as_np(torch.where(holes, predicted, original))}


def mel_picture(n_mels: int) -> Callable[[Tensor], Tensor]:
    """(n, n_mels * frames) window log-mels -> (n_mels, n * frames): the clip's spectrogram."""
    return lambda v: v.view(v.shape[0], n_mels, -1).permute(1, 0, 2).reshape(n_mels, -1)


def frame_picture(frames: int, channels: int, pool: int) -> Callable[[Tensor], Tensor]:
    """(n, F * C * p * p) pooled windows -> (p, n * F * p): channel 0 of every frame, side by side."""
    return lambda v: v.view(v.shape[0], frames, channels, pool, pool)[:, :, 0].permute(2, 0, 1, 3).reshape(pool, -1)


def _target_spec(modality: str, cfg: Any, options: SurveillancePretrainOptions) -> tuple[Callable[[Tensor], Tensor], int, str]:
    from mmapps_domains.surveillance.options import data_options
    from mmapps_domains.surveillance.text_embed import EMBED_DIM

    data = data_options(cfg.data.options)
    if modality == "audio":
        return audio_target, data.n_mels * data.mel_frames, "the window's log-mel spectrogram"
    if modality == "video":
        channels = data.channels * (2 if data.motion_channel else 1)
        return video_target(options.video_pool), data.frames_per_window * channels * options.video_pool ** 2, f"the window's frames and motion, {options.video_pool}x{options.video_pool} averages"
    if modality == "chat":
        return vector_target, EMBED_DIM + 1, "the window's frozen MiniLM message vector and log message count"
    return vector_target, int(data.features_dim or 1), "the window's pre-extracted features"


def window_fusion(core: nn.Module, cfg: Any) -> tuple[nn.Module, bool]:
    """The token fusion windows go through: the model's own per-time-step attention fusion, or (for the
    other fusions, whose per-step outputs are not tokens) a causal one used only while pretraining.

    Returns the fusion and whether it is the model's own (then it is transferred by ``train --init``).
    """
    from mmapps.models.fusions.attention import AttentionFusion

    fusion = core.fusion
    if isinstance(fusion, AttentionFusion) and fusion.per_timestep:
        return fusion, True
    dim = int(cfg.model.dim)
    return AttentionFusion({m: core.encoders[m].out_dim for m in core.modalities}, dim, layers=2, heads=4 if dim % 4 == 0 else 1, per_timestep=True, causal=True), False


def pretrain(cfg: Any, domain: Any, model: nn.Module) -> PretrainParts:
    """``Domain.pretrain``: window-block objectives for every modality of the model and a causal window fusion."""
    from mmapps.config import validate_options
    from mmapps.errors import ConfigError
    from mmapps_domains.surveillance.options import data_options

    options = validate_options(SurveillancePretrainOptions, dict(cfg.pretrain.options), "pretrain.options")
    core = getattr(model, "core", model)
    fusion, own = window_fusion(core, cfg)
    if options.next_window and not fusion.causal:
        raise ConfigError("pretrain.options.next_window=true needs a causal fusion: with model.fusion.options.causal=false every window sees the "
                          "windows it would forecast; set model.fusion.options.causal=true (the recipes' setting) or leave next_window off")
    fusion_lookahead = int(fusion.lookahead) if fusion.causal else 0
    objectives = {}
    for modality in core.modalities:
        target_fn, target_dim, name = _target_spec(modality, cfg, options)
        objectives[modality] = WindowBlockObjective(target_fn, target_dim, fusion.out_dim, options, name, ratio=cfg.pretrain.mask_ratio.get(modality, 0.6),
                                                    block=cfg.pretrain.block, decoder_layers=cfg.pretrain.decoder_layers, fusion_lookahead=fusion_lookahead,
                                                    needs_messages=modality == "chat")
    if not own:  # registered (trained, saved with the decoders) through an objective, discarded after pretraining
        objectives[core.modalities[0]].pretrain_fusion = fusion
    data = data_options(cfg.data.options)
    if "audio" in objectives:
        objectives["audio"].picture = mel_picture(data.n_mels)
    if "video" in objectives:
        objectives["video"].picture = frame_picture(data.frames_per_window, data.channels * (2 if data.motion_channel else 1), options.video_pool)
    prefix = "core." if core is not model else ""
    transferred = (f"{prefix}encoders", f"{prefix}fusion") if own else (f"{prefix}encoders",)
    return PretrainParts(encoders=dict(core.encoders), fusion=fusion, objectives=objectives, transferred=transferred)
