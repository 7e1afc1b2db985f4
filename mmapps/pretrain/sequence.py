"""Objectives for token-per-time-step encoders: audio and video windows or frames, feature sequences, signals.

Hidden units are blocks of consecutive time steps (windows, frames, feature rows, or the
``stride`` samples of one `signal_resnet1d` token). Their input is zeroed before the encoder, and
their tokens are dropped after it, so neither a temporal convolution nor batch statistics carry a
hidden step into a visible token (a per-window encoder would be safe with dropping alone).

Targets (fixed functions of the input, normalised per unit unless said otherwise):

- audio window: its log-mel spectrogram pooled to ``bins`` time bins (n_mels x bins values);
  audio token of a whole waveform: the log-mel frames under that token, pooled to ``bins``;
- video window or frame: 8x8 average-pooled frames (appearance) and their absolute frame-to-frame
  difference (motion), per channel;
- feature rows (`features_mlp`, `identity`): the row, standardised per feature by the pool's mean and
  standard deviation (`fit_statistics`; a per-row normalisation would erase low-dimensional rows);
- signal token: the samples under it, standardised per sample and channel over the real signal
  (as the encoder's own ``normalize="sample"``), not re-normalised per unit.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmapps.data.sample import ModalityBatch
from mmapps.pretrain.contract import (
    EncodedModality,
    FusedContext,
    MaskKeys,
    ModalityMask,
    ModalityObjective,
    ModalityTarget,
)
from mmapps.pretrain.decoder import UnitDecoder
from mmapps.pretrain.masking import draw_units

POOL = 8  # video target: frames average-pooled to POOL x POOL


def per_unit_norm(values: Tensor) -> Tensor:
    """Normalise each unit's values to zero mean, unit variance (MAE's norm-pix, per time unit)."""
    mean, var = values.mean(-1, keepdim=True), values.var(-1, keepdim=True, unbiased=False)
    return (values - mean) / torch.sqrt(var + 1e-6)


class TimeUnitObjective(ModalityObjective):
    """Masked blocks of time units for `audio_cnn`, `video_cnn`, `features_mlp`, `identity` and windowed signals.

    Args:
        kind: ``audio``, ``video``, ``features`` or ``signal_windows``.
        encoder: the modality's encoder.
        context_dim, modalities, modality, decoder_dim, layers, heads: decoder (see `UnitDecoder`).
        ratio: share of units hidden; block: units per contiguous block.
        out_dim: P, target values per unit.
    """

    target_name = "per-unit input features"
    picture_cmap = "magma"

    def __init__(self, kind: str, encoder: nn.Module, context_dim: int, modalities: tuple[str, ...], modality: str, ratio: float, block: int, out_dim: int, decoder_dim: int, layers: int, heads: int, bins: int = 4) -> None:
        super().__init__()
        self.kind, self.ratio, self.block, self.bins = kind, ratio, block, bins
        self.unit = {"audio": "block of windows / time steps", "video": "block of windows / frames", "features": "block of feature rows", "signal_windows": "block of windows"}[kind]
        self._encoder_ref = [encoder]
        self._steps: dict[int, int] = {}
        self.decoder = UnitDecoder(context_dim, decoder_dim, out_dim, modalities, modality, layers, heads)
        if kind == "features":
            self.register_buffer("feature_mean", torch.zeros(out_dim))
            self.register_buffer("feature_std", torch.ones(out_dim))

    def fit_statistics(self, batches: list[ModalityBatch]) -> None:
        """Feature rows: per-feature mean and standard deviation over the real rows of the pool's first batches."""
        if self.kind != "features":
            return
        rows = []
        for mb in batches:
            if mb.data is None:
                continue
            data = mb.data.float().unsqueeze(1) if mb.data.dim() == 2 else mb.data.float()
            real = self._units(mb)
            rows.append(torch.nan_to_num(data)[real])
        if rows and sum(r.shape[0] for r in rows) > 1:
            values = torch.cat(rows)
            self.feature_mean.copy_(values.mean(0))
            self.feature_std.copy_(values.std(0).clamp_min(1e-6))

    # -- units --------------------------------------------------------------------------------
    def _windowed(self, data: Tensor) -> bool:
        return {"audio": 3, "video": 6, "signal_windows": 4}.get(self.kind, -1) == data.dim()

    def _audio_tokens(self, samples: int, device: torch.device) -> int:
        """Tokens the audio CNN gives a whole waveform of `samples` samples (a dry run in eval mode, once per length)."""
        if samples not in self._steps:
            encoder = self._encoder_ref[0]
            was_training = encoder.training
            encoder.eval()
            with torch.no_grad():
                self._steps[samples] = encoder._frames(torch.zeros(1, samples, device=device)).shape[1]
            encoder.train(was_training)
        return self._steps[samples]

    def _units(self, mb: ModalityBatch) -> Tensor:
        data = mb.data
        B = data.shape[0]
        if self.kind == "audio" and not self._windowed(data):
            U = self._audio_tokens(data.shape[1], data.device)
        elif self.kind == "features" and data.dim() == 2:
            U = 1
        else:
            U = data.shape[1]
        real = mb.mask if (mb.mask is not None and mb.mask.shape[1] == U) else torch.ones(B, U, dtype=torch.bool, device=data.device)
        return real & mb.present.unsqueeze(1)

    def draw(self, mb: ModalityBatch, keys: MaskKeys, stream: int) -> ModalityMask:
        real = self._units(mb)
        hidden = draw_units(real, keys, stream, self.ratio, self.block)
        return ModalityMask(hidden, real, torch.zeros(real.shape[0], dtype=torch.bool, device=real.device), (real.shape[1],))

    # -- encoding -----------------------------------------------------------------------------
    def _zeroed(self, data: Tensor, hidden: Tensor) -> Tensor:
        """The input with the content of hidden units set to 0."""
        B, U = hidden.shape
        keep = (~hidden).to(torch.float32)
        if self.kind == "audio" and not self._windowed(data):  # token t covers samples [t*stride, (t+1)*stride)
            S = data.shape[1]
            stride = max(S // U, 1)
            n = min(U * stride, S)
            per_sample = keep[:, -1:].repeat(1, S)  # the tail after the last full token goes with the last token
            per_sample[:, :n] = keep.repeat_interleave(stride, dim=1)[:, :n]
            return data.float() * per_sample
        shape = (B, U) + (1,) * (data.dim() - 2)
        return data.float() * keep.view(shape)

    def encode(self, encoder: nn.Module, mb: ModalityBatch, mask: ModalityMask) -> EncodedModality:
        out = encoder(ModalityBatch(self._zeroed(mb.data, mask.hidden), mb.present, mb.mask, mb.offsets))
        T = out.tokens.shape[1]
        token_mask = out.token_mask & (mask.visible if T == mask.hidden.shape[1] else mask.visible.any(1, keepdim=True))
        B = token_mask.shape[0]
        positions = torch.arange(T, device=token_mask.device).expand(B, -1) if T == mask.hidden.shape[1] else torch.full((B, T), -1, device=token_mask.device)
        count = token_mask.sum(1, keepdim=True).clamp_min(1).to(out.tokens.dtype)
        pooled = (out.tokens * token_mask.unsqueeze(-1)).sum(1) / count
        return EncodedModality(out._replace(token_mask=token_mask), positions, pooled, token_mask.any(1))

    # -- targets ------------------------------------------------------------------------------
    def target(self, encoder: nn.Module, mb: ModalityBatch, mask: ModalityMask) -> ModalityTarget:
        data = mb.data.float()
        U = mask.hidden.shape[1]
        if self.kind == "audio":
            values = self._log_mel_units(encoder, data, U)
        elif self.kind == "video":
            values = self._video_units(data)
        elif self.kind == "signal_windows":
            B, W, S, C = data.shape
            values = F.adaptive_avg_pool1d(torch.nan_to_num(data).reshape(B * W, S, C).transpose(1, 2), self.bins * 4).reshape(B, W, -1)
        else:
            rows = data.unsqueeze(1) if data.dim() == 2 else data
            standard = (torch.nan_to_num(rows) - self.feature_mean) / self.feature_std
            return ModalityTarget(standard, (mask.hidden & mask.real).float())
        return ModalityTarget(per_unit_norm(torch.nan_to_num(values)), (mask.hidden & mask.real).float())

    def _log_mel_units(self, encoder: nn.Module, data: Tensor, U: int) -> Tensor:
        with torch.no_grad():
            if self._windowed(data):
                B, W, S = data.shape
                spec = torch.log(encoder.melspec(data.reshape(B * W, S)) + 1e-6)  # (B*W, n_mels, frames)
                return F.adaptive_avg_pool1d(spec, self.bins).reshape(B, W, -1)  # (B, W, n_mels*bins)
            spec = torch.log(encoder.melspec(data) + 1e-6)  # (B, n_mels, frames)
            pooled = F.adaptive_avg_pool1d(spec, U * self.bins)  # (B, n_mels, U*bins)
            B, M = pooled.shape[:2]
            return pooled.view(B, M, U, self.bins).permute(0, 2, 1, 3).reshape(B, U, M * self.bins)

    def _video_units(self, data: Tensor) -> Tensor:
        frames = data if data.dim() == 6 else data.unsqueeze(2)  # (B, U, F, C, H, W): one frame per unit when not windowed
        B, U, Fr, C = frames.shape[:4]
        small = F.adaptive_avg_pool2d(frames.flatten(0, 2), POOL).view(B, U, Fr, C * POOL * POOL)
        appearance = small.mean(2)  # (B, U, C*64)
        if Fr > 1:
            motion = (small[:, :, 1:] - small[:, :, :-1]).abs().mean(2)
        else:  # frames as units: the change from the previous frame
            motion = torch.cat([torch.zeros_like(small[:, :1, 0]), (small[:, 1:, 0] - small[:, :-1, 0]).abs()], dim=1)
        return torch.cat([appearance, motion], dim=-1)  # (B, U, 2*C*64)

    def reconstruct(self, context: FusedContext, mask: ModalityMask) -> Tensor:
        return self.decoder.predict(context, mask.grid[0])

    def render(self, mb: ModalityBatch, mask: ModalityMask, prediction: Tensor, target: ModalityTarget, index: int) -> dict[str, np.ndarray] | None:
        """Audio: the log-mel target (mel bands x time bins, per-unit normalised), with hidden units blank, and the reconstruction."""
        if self.kind != "audio":
            return None
        U = mask.hidden.shape[1]
        bins = self.bins
        to_image = lambda values: values.view(U, -1, bins).permute(1, 0, 2).reshape(-1, U * bins).flip(0)  # (mels, time), low bands at the bottom  # noqa: E731
        original = to_image(target.values[index].float())
        holes = mask.hidden[index].repeat_interleave(bins).unsqueeze(0).expand_as(original)
        reconstructed = torch.where(holes, to_image(prediction[index].float()), original)
        as_np = lambda t: t.detach().cpu().numpy()  # noqa: E731
        return {"log-mel (normalised)": as_np(original), "masked": as_np(original.masked_fill(holes, float("nan"))), "reconstructed": as_np(reconstructed)}


class SignalTimeObjective(ModalityObjective):
    """`signal_resnet1d` on whole signals ``(B, S, C)``: hidden blocks of ``stride`` samples per token.

    Hidden samples leave the encoder's sample mask, so its per-sample normalisation and every
    `MaskedGroupNorm` use visible samples only and zero the hidden ones at each stage (SparK's
    sparse convolution in 1-D).
    """

    unit = "block of stride samples"
    target_name = "standardised samples"

    def __init__(self, encoder: nn.Module, context_dim: int, modalities: tuple[str, ...], modality: str, ratio: float, block: int, decoder_dim: int, layers: int, heads: int) -> None:
        super().__init__()
        self.ratio, self.block, self.stride = ratio, block, encoder.stride
        self.decoder = UnitDecoder(context_dim, decoder_dim, encoder.stride * encoder.in_channels, modalities, modality, layers, heads)

    def _sample_mask(self, mb: ModalityBatch) -> Tensor:
        return mb.mask if mb.mask is not None else torch.ones(mb.data.shape[:2], dtype=torch.bool, device=mb.data.device)

    def draw(self, mb: ModalityBatch, keys: MaskKeys, stream: int) -> ModalityMask:
        if mb.data.dim() == 4:  # (B, W, S_w, C) windows, one token each
            B, W = mb.data.shape[:2]
            real = (mb.mask if mb.mask is not None else torch.ones(B, W, dtype=torch.bool, device=mb.data.device)) & mb.present.unsqueeze(1)
            return ModalityMask(draw_units(real, keys, stream, self.ratio, self.block), real, torch.zeros(B, dtype=torch.bool, device=real.device), (W,))
        samples = self._sample_mask(mb)
        real = samples[:, :: self.stride] & mb.present.unsqueeze(1)  # (B, T): a token is real if its first sample is
        hidden = draw_units(real, keys, stream, self.ratio, self.block)
        return ModalityMask(hidden, real, torch.zeros(real.shape[0], dtype=torch.bool, device=real.device), (real.shape[1],))

    def encode(self, encoder: nn.Module, mb: ModalityBatch, mask: ModalityMask) -> EncodedModality:
        if mb.data.dim() == 4:
            data = torch.nan_to_num(mb.data.float()) * (~mask.hidden).float().view(*mask.hidden.shape, 1, 1)
            out = encoder(ModalityBatch(data, mb.present, mb.mask, mb.offsets))
            return self._encoded(out, mask)
        S = mb.data.shape[1]
        hidden_samples = mask.hidden.repeat_interleave(self.stride, dim=1)[:, :S]  # (B, S)
        samples = self._sample_mask(mb) & ~hidden_samples
        data = torch.nan_to_num(mb.data.float()) * samples.unsqueeze(-1)
        return self._encoded(encoder(ModalityBatch(data, mb.present, samples, mb.offsets)), mask)

    def _encoded(self, out, mask: ModalityMask) -> EncodedModality:
        token_mask = out.token_mask & mask.visible
        B, T = token_mask.shape
        count = token_mask.sum(1, keepdim=True).clamp_min(1).to(out.tokens.dtype)
        pooled = (out.tokens * token_mask.unsqueeze(-1)).sum(1) / count
        return EncodedModality(out._replace(token_mask=token_mask), torch.arange(T, device=token_mask.device).expand(B, -1), pooled, token_mask.any(1))

    def target(self, encoder: nn.Module, mb: ModalityBatch, mask: ModalityMask) -> ModalityTarget:
        if mb.data.dim() == 4:  # each window pooled to `stride` samples per channel, normalised per window
            B, W, S, C = mb.data.shape
            pooled = F.adaptive_avg_pool1d(torch.nan_to_num(mb.data.float()).reshape(B * W, S, C).transpose(1, 2), self.stride)  # (B*W, C, stride)
            return ModalityTarget(per_unit_norm(pooled.reshape(B, W, C * self.stride)), (mask.hidden & mask.real).float())
        samples = self._sample_mask(mb).unsqueeze(-1).float()  # (B, S, 1)
        x = torch.nan_to_num(mb.data.float()) * samples
        count = samples.sum(1, keepdim=True).clamp_min(1.0)
        mean = x.sum(1, keepdim=True) / count
        std = torch.sqrt(((x - mean) ** 2 * samples).sum(1, keepdim=True) / count + 1e-6)
        x = (x - mean) / std * samples  # (B, S, C)
        B, S, C = x.shape
        T = mask.hidden.shape[1]
        x = F.pad(x, (0, 0, 0, T * self.stride - S))  # (B, T*stride, C)
        return ModalityTarget(x.view(B, T, self.stride * C), (mask.hidden & mask.real).float())

    def reconstruct(self, context: FusedContext, mask: ModalityMask) -> Tensor:
        return self.decoder.predict(context, mask.grid[0])
