"""Audio encoder: torchaudio log-mel front end + a small 2D CNN, one token per time frame (or per window)."""

from __future__ import annotations

import torch
from torch import nn

from mmapps.data.sample import ModalityBatch
from mmapps.models.pooling import masked_mean
from mmapps.models.types import EncoderOutput
from mmapps.registry import ENCODERS


@ENCODERS.register("audio_cnn")
class AudioCnnEncoder(nn.Module):
    """Waveforms -> tokens.

    Inputs ``(B, S)`` (one waveform per sample, padded) give one token per CNN time step;
    inputs ``(B, W, S)`` (the same windows as other time-aligned modalities) give one token per window.

    Args:
        dim: output width.
        sample_rate: Hz of the input waveform.
        n_mels: mel bands.
        hop_ms: hop between spectrogram frames.
        width: CNN channel width.
    """

    def __init__(self, dim: int, sample_rate: int = 16000, n_mels: int = 64, hop_ms: float = 10.0, width: int = 32) -> None:
        super().__init__()
        import torchaudio

        hop = int(sample_rate * hop_ms / 1000)
        self.hop = hop
        self.melspec = torchaudio.transforms.MelSpectrogram(sample_rate=sample_rate, n_fft=4 * hop, hop_length=hop, n_mels=n_mels)
        layers: list[nn.Module] = []
        channels = 1
        for out in (width, width * 2, width * 4):
            layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            channels = out
        self.cnn = nn.Sequential(*layers)
        self.proj = nn.Linear(channels, dim)
        self.out_dim = dim

    def _frames(self, wave: torch.Tensor) -> torch.Tensor:
        """(N, S) -> (N, T', D) tokens along time."""
        with torch.autocast(device_type=wave.device.type, enabled=False):
            spec = torch.log(self.melspec(wave.float()) + 1e-6)  # (N, n_mels, T)
        fmap = self.cnn(spec.unsqueeze(1))  # (N, C, n_mels', T')
        return self.proj(fmap.mean(2).transpose(1, 2))  # (N, T', D)

    def forward(self, mb: ModalityBatch) -> EncoderOutput:
        wave = mb.data
        present = mb.present.unsqueeze(1)
        if wave.dim() == 3:  # (B, W, S): one token per window
            B, W, S = wave.shape
            frames = self._frames(wave.reshape(B * W, S))  # (B*W, T', D)
            tokens = frames.mean(1).view(B, W, -1)  # (B, W, D)
            token_mask = (mb.mask if mb.mask is not None else torch.ones(B, W, dtype=torch.bool, device=wave.device)) & present
            return EncoderOutput(tokens, token_mask, masked_mean(tokens, token_mask))
        tokens = self._frames(wave)  # (B, T', D)
        T = tokens.shape[1]
        if mb.mask is not None:  # a token is real if its first sample is real
            stride = max(wave.shape[1] // T, 1)
            token_mask = mb.mask[:, ::stride][:, :T]
            token_mask = torch.nn.functional.pad(token_mask, (0, T - token_mask.shape[1]))
        else:
            token_mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=wave.device)
        token_mask = token_mask & present
        return EncoderOutput(tokens, token_mask, masked_mean(tokens, token_mask))
