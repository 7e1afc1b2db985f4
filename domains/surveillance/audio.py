"""Audio: the clip's own track or a separate audio file (probed, any accepted container), resampled, cut into windows, log-mel.

Samples are placed on the clip's time line by their timestamps: the first decoded frame's time
gives the position of the first sample, gaps are zero-filled, and everything past the video's end
is dropped, which trims the padding AAC encoders add at the end of a track.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from mmapps_domains.surveillance.errors import MediaError
from mmapps_domains.surveillance.windows import WindowSpec


def make_resampler(rate: int) -> Any:
    """A stateful FFmpeg resampler to mono float32 at ``rate`` Hz (keeps streaming seamless)."""
    import av

    return av.AudioResampler(format="flt", layout="mono", rate=rate)


def resampled_samples(resampler: Any, frame: Any) -> np.ndarray:
    """Feed one ``av.AudioFrame`` (or None to flush) and return the mono float32 samples it yields."""
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


class MonoConverter:
    """Decoded audio frames -> mono float32 samples at ``rate`` Hz, in stream order.

    A stream that is already mono float at ``rate`` (a 16 kHz mono AAC or Opus track: ``fltp``)
    is copied out of the frame as it is; anything else goes through one stateful FFmpeg resampler
    for the whole stream, so chunk boundaries leave no seam. The choice is made on the first frame
    and kept for the stream.
    """

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.resampler: Any = None
        self.passthrough: bool | None = None

    def __call__(self, frame: Any) -> np.ndarray:
        """Samples of one frame (or of the resampler's delay when ``frame`` is None: end of stream)."""
        if frame is None:
            return resampled_samples(self.resampler, None) if self.resampler is not None else np.zeros(0, np.float32)
        if self.passthrough is None:
            self.passthrough = (frame.sample_rate == self.rate and frame.layout.nb_channels == 1 and frame.format.name in ("flt", "fltp"))
            if not self.passthrough:
                self.resampler = make_resampler(self.rate)
        if self.passthrough:
            return np.asarray(frame.to_ndarray(), np.float32).reshape(-1)
        return resampled_samples(self.resampler, frame)


class AudioWindowBuffer:
    """Collects samples placed by time and hands out complete windows of ``samples_per_window``."""

    def __init__(self, spec: WindowSpec) -> None:
        self.spec = spec
        self.pending = np.zeros(0, np.float32)
        self.next_sample = 0  # clip-time index of pending[0]
        self.window = 0

    @property
    def available_until(self) -> int:
        """Clip-time sample index up to which samples are known."""
        return self.next_sample + self.pending.size

    def add(self, samples: np.ndarray, start_sample: int) -> None:
        """Add samples whose first one sits at ``start_sample`` on the clip time line."""
        end = self.available_until
        if start_sample > end:
            samples = np.concatenate([np.zeros(start_sample - end, np.float32), samples])
        elif start_sample < end:
            samples = samples[end - start_sample:]
        self.pending = np.concatenate([self.pending, samples])

    def pop_windows(self, limit_window: int | None = None) -> list[np.ndarray]:
        """Return complete windows (S,) not past ``limit_window`` (exclusive)."""
        n = self.spec.samples_per_window
        out = []
        while self.pending.size >= n and (limit_window is None or self.window < limit_window):
            out.append(self.pending[:n].copy())
            self.pending = self.pending[n:]
            self.next_sample += n
            self.window += 1
        return out

    def finish(self, n_windows: int, end_sample: int | None = None) -> list[np.ndarray]:
        """Drop samples from ``end_sample`` on (the video's end: encoder padding), zero-pad to
        ``n_windows`` complete windows and return those not yet handed out."""
        if end_sample is not None and self.available_until > end_sample:
            self.pending = self.pending[: max(0, end_sample - self.next_sample)]
        missing = n_windows * self.spec.samples_per_window - self.available_until
        if missing > 0:
            self.pending = np.concatenate([self.pending, np.zeros(missing, np.float32)])
        return self.pop_windows(n_windows)


def iter_audio_file(path: Path, rate: int) -> Iterator[np.ndarray]:
    """Stream an audio file (any accepted container/codec, probed: `probe.open_media`) as mono float32 at ``rate`` Hz.

    Raises:
        MediaError: refused, unreadable or corrupt file, or one without an audio stream.
    """
    import av

    from mmapps_domains.surveillance.probe import check_codec, open_media

    path = Path(path)
    container = open_media(path, "audio file")
    try:
        if not container.streams.audio:
            raise MediaError(f"audio file {path}: has no audio stream (streams found: {[s.type for s in container.streams] or 'none'})")
        stream = container.streams.audio[0]
        check_codec(stream, path, "audio file")
        convert = MonoConverter(rate)
        try:
            for packet in container.demux(stream):
                for frame in packet.decode():
                    yield convert(frame)
        except av.error.FFmpegError as err:
            raise MediaError(f"audio file {path}: corrupt {stream.codec_context.name} stream ({err})") from None
        yield convert(None)
    finally:
        container.close()


def read_audio_file(path: Path, rate: int) -> np.ndarray:
    """Read a whole audio file as mono float32 at ``rate`` Hz."""
    chunks = list(iter_audio_file(path, rate))
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


@lru_cache(maxsize=8)
def _mel_parts(n_fft: int, sample_rate: int, n_mels: int) -> tuple[Any, Any]:
    """Hann window and mel filterbank (Fq, M), built once per setting."""
    import torch
    from torchaudio.functional import melscale_fbanks

    fbanks = melscale_fbanks(n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate, norm="slaney")
    return torch.hann_window(n_fft), fbanks


def log_mel(windows: np.ndarray, spec: WindowSpec) -> np.ndarray:
    """Per-window log-mel spectrogram; each window is transformed alone (streaming gives equal values).

    Args:
        windows: float32 (W, S) waveform windows, S = ``spec.samples_per_window``.
        spec: sample rate, mel bands and frames per window.

    Returns:
        float32 (W, n_mels, mel_frames): natural log of mel power + 1e-6, shifted by +6 and scaled by 1/4.
    """
    import torch

    x = torch.as_tensor(windows, dtype=torch.float32)  # (W, S)
    hop = spec.samples_per_window // spec.mel_frames
    n_fft = 1 << max(6, (2 * hop - 1).bit_length())
    window, fbanks = _mel_parts(n_fft, spec.sample_rate, spec.n_mels)
    stft = torch.stft(x, n_fft=n_fft, hop_length=hop, window=window, center=True, return_complex=True)
    power = stft.abs() ** 2  # (W, n_fft // 2 + 1, frames)
    mel = torch.einsum("wft,fm->wmt", power, fbanks)[..., : spec.mel_frames]  # (W, M, T)
    return ((torch.log(mel + 1e-6) + 6.0) / 4.0).numpy().astype(np.float32)
