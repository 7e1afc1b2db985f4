"""Multichannel 1-D signal encoder (ECG, EEG, accelerometers, vital signs): a ResNet1d with a fixed stride.

Normalisation (per sample, per channel group) uses the statistics of the whole real signal, so the
encoder is not causal: for streaming, encode each window on its own (the ``(B, W, S_w, C)`` input).

Token ``t`` summarises samples ``[t * stride, (t + 1) * stride)``, so tokens stay aligned with time
(``t * stride / fs`` seconds) and with other modalities' time steps for per-time-step fusion.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mmapps.data.sample import ModalityBatch
from mmapps.models.pooling import masked_mean
from mmapps.models.types import EncoderOutput
from mmapps.registry import ENCODERS


class MaskedGroupNorm(nn.GroupNorm):
    """GroupNorm over the real time steps of each sample only, zero on padding.

    Per-sample statistics keep absent (zero-filled) samples out of present ones (BatchNorm would
    mix them); masking keeps a signal's encoding independent of how far the batch pads it.
    """

    def __init__(self, channels: int) -> None:
        super().__init__(8 if channels % 8 == 0 else 1, channels)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:  # type: ignore[override]
        N, C, L = x.shape
        G = self.num_groups
        grouped = x.view(N, G, C // G, L)  # (N, G, C/G, L)
        m = mask.view(N, 1, 1, L).to(x.dtype)
        count = (m.sum((2, 3)) * (C // G)).clamp_min(1.0)  # (N, G)
        mean = (grouped * m).sum((2, 3)) / count
        var = (((grouped - mean[..., None, None]) ** 2) * m).sum((2, 3)) / count
        normed = ((grouped - mean[..., None, None]) / torch.sqrt(var[..., None, None] + self.eps)).view(N, C, L)
        return (normed * self.weight.view(1, C, 1) + self.bias.view(1, C, 1)) * mask.unsqueeze(1).to(x.dtype)


class ResidualBlock1d(nn.Module):
    """conv(k, stride) -> norm -> ReLU -> conv(k) -> norm, plus a (1x1, stride) shortcut, then ReLU; padding stays 0."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, residual: bool) -> None:
        super().__init__()
        self.stride, self.residual = stride, residual
        self.conv1 = nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.norm1 = MaskedGroupNorm(c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, kernel, padding=kernel // 2, bias=False)
        self.norm2 = MaskedGroupNorm(c_out)
        self.project = c_in != c_out or stride != 1
        if self.project:
            self.shortcut = nn.Conv1d(c_in, c_out, 1, stride=stride, bias=False)
            self.shortcut_norm = MaskedGroupNorm(c_out)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """(N, C, L) with (N, L) mask -> (N, C', ceil(L / stride)) with its mask."""
        out_mask = mask[:, :: self.stride]  # (N, L'): a step is real if its first input sample is
        out = torch.relu(self.norm1(self.conv1(x), out_mask))
        out = self.norm2(self.conv2(out), out_mask)
        if self.residual:
            out = out + (self.shortcut_norm(self.shortcut(x), out_mask) if self.project else x)
        return torch.relu(out), out_mask


@ENCODERS.register("signal_resnet1d")
class SignalResNet1dEncoder(nn.Module):
    """Signals ``(B, S, C)`` -> one token per `stride` samples ``(B, ceil(S / stride), D)``.

    Inputs: ``fixed`` layout ``(B, S, C)``; ``padded`` layout ``(B, S, C)`` with a sample mask
    ``(B, S)`` (signals of different lengths); or time windows ``(B, W, S_w, C)`` (the windows of
    other time-aligned modalities, mask ``(B, W)``) -> one token per window. NaN samples are set to 0.

    Args:
        dim: output width (``model.dim``).
        in_channels: channels C (12 for a 12-lead ECG).
        width: channels of the first stage; they double per stage up to 4 x width.
        stride: samples per token, a power of two (one stride-2 stage per factor of 2).
        blocks: residual blocks per stage.
        kernel: odd convolution kernel size.
        residual: False gives a plain 1-D CNN of the same shape.
        normalize: ``sample`` standardises each channel of each sample over its real samples
            (unit-free: mV, µV and g look alike); ``none`` feeds the values as they are.
    """

    def __init__(self, dim: int, in_channels: int, width: int = 32, stride: int = 16, blocks: int = 1, kernel: int = 7, residual: bool = True, normalize: str = "sample") -> None:
        super().__init__()
        if stride < 1 or stride & (stride - 1):
            raise ValueError(f"signal_resnet1d: stride must be a power of two (samples per token), found {stride}")
        if kernel % 2 == 0 or kernel < 1:
            raise ValueError(f"signal_resnet1d: kernel must be odd, found {kernel}")
        if normalize not in ("sample", "none"):
            raise ValueError(f"signal_resnet1d: normalize must be 'sample' or 'none', found {normalize!r}")
        if in_channels < 1 or blocks < 1:
            raise ValueError(f"signal_resnet1d: in_channels and blocks must be >= 1, found {in_channels} and {blocks}")
        self.stride, self.normalize, self.in_channels = stride, normalize, in_channels
        self.stem = nn.Conv1d(in_channels, width, kernel, padding=kernel // 2, bias=False)
        self.stem_norm = MaskedGroupNorm(width)
        stages: list[nn.Module] = []
        channels = width
        for i in range(max(int(math.log2(stride)), 1)):
            out = width * min(2 ** (i + 1), 4)
            for b in range(blocks):
                stages.append(ResidualBlock1d(channels, out, kernel, 2 if b == 0 and stride > 1 else 1, residual))
                channels = out
        self.stages = nn.ModuleList(stages)
        self.proj = nn.Linear(channels, dim)
        self.out_dim = dim

    def encode(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """(N, S, C) signals and (N, S) sample mask -> (N, T, D) tokens and (N, T) token mask."""
        x = torch.nan_to_num(x.float()) * mask.unsqueeze(-1)  # (N, S, C)
        if self.normalize == "sample":
            count = mask.sum(1, keepdim=True).clamp_min(1).unsqueeze(-1)  # (N, 1, 1)
            mean = x.sum(1, keepdim=True) / count
            var = ((x - mean) ** 2 * mask.unsqueeze(-1)).sum(1, keepdim=True) / count
            x = (x - mean) / (var.sqrt() + 1e-6) * mask.unsqueeze(-1)  # (N, S, C)
        fmap = torch.relu(self.stem_norm(self.stem(x.transpose(1, 2)), mask))  # (N, C, S)
        for stage in self.stages:
            fmap, mask = stage(fmap, mask)  # (N, C', S / 2^k), (N, S / 2^k)
        return self.proj(fmap.transpose(1, 2)), mask  # (N, T, D), (N, T)

    def forward(self, mb: ModalityBatch) -> EncoderOutput:
        x = mb.data
        if x.shape[-1] != self.in_channels:
            raise ValueError(f"signal_resnet1d: inputs have {x.shape[-1]} channels in the last axis, the encoder was built for in_channels={self.in_channels}; signals are (samples, channels)")
        present = mb.present.unsqueeze(1)  # (B, 1)
        if x.dim() == 4:  # (B, W, S_w, C): one token per window
            B, W, S, C = x.shape
            tokens, step_mask = self.encode(x.reshape(B * W, S, C), torch.ones(B * W, S, dtype=torch.bool, device=x.device))
            tokens = masked_mean(tokens, step_mask).view(B, W, -1)  # (B, W, D)
            window_mask = mb.mask if mb.mask is not None else torch.ones(B, W, dtype=torch.bool, device=x.device)
            token_mask = window_mask & present
            return EncoderOutput(tokens, token_mask, masked_mean(tokens, token_mask))
        mask = mb.mask if mb.mask is not None else torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)  # (B, S)
        tokens, token_mask = self.encode(x, mask)
        token_mask = token_mask & present
        return EncoderOutput(tokens, token_mask, masked_mean(tokens, token_mask))
