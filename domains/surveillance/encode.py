"""Writing real clips with PyAV (demo data and tests): video frames plus an optional audio track."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

VIDEO_CODECS = {"h264": "libx264", "mpeg4": "mpeg4", "mjpeg": "mjpeg", "hevc": "libx265", "vp9": "libvpx-vp9"}


def write_clip(
    path: Path,
    frames: Iterable[np.ndarray],
    fps: int,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    codec: str = "h264",
    audio_codec: str = "aac",
) -> Path:
    """Encode RGB frames (and mono audio) into a container chosen by the suffix (mp4, avi, mkv, webm).

    Args:
        path: output file.
        frames: uint8 (T, H, W, 3) RGB frames, or an iterable of (H, W, 3) frames (long clips
            without holding them in memory); H and W must be even.
        fps: frame rate.
        audio: float32 (S,) mono samples in [-1, 1], or None for a clip without audio.
        sample_rate: audio rate in Hz.
        codec: h264, mpeg4, mjpeg, hevc or vp9.
        audio_codec: FFmpeg audio encoder name (aac, libopus, libvorbis, mp3).

    Returns:
        ``path``.
    """
    import itertools
    from fractions import Fraction

    import av

    if codec not in VIDEO_CODECS:
        raise ValueError(f"write_clip: codec {codec!r} not supported; expected one of {sorted(VIDEO_CODECS)}")
    frames = iter(frames)
    first = next(frames)
    container = av.open(str(path), "w")
    vstream = container.add_stream(VIDEO_CODECS[codec], rate=fps)
    vstream.height, vstream.width = first.shape[0], first.shape[1]
    vstream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
    if codec == "h264":
        vstream.options = {"preset": "ultrafast", "crf": "23"}
    elif codec == "hevc":
        vstream.options = {"preset": "ultrafast", "x265-params": "log-level=error"}
    astream = None
    if audio is not None:
        astream = container.add_stream(audio_codec, rate=sample_rate)
        astream.layout = "mono"
    for img in itertools.chain([first], frames):
        for packet in vstream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
            container.mux(packet)
    for packet in vstream.encode():
        container.mux(packet)
    if astream is not None:
        frame = av.AudioFrame.from_ndarray(np.clip(audio, -1, 1).astype(np.float32)[None], format="flt", layout="mono")
        frame.sample_rate = sample_rate
        if Path(path).suffix.lower() != ".avi":
            # A timestamped first frame makes the encoder give its priming packets (AAC: 1024
            # samples) negative times, which mp4 / mkv / webm record (edit list, codec delay) so
            # that decoders drop them; unstamped, they play at 0 and the track is heard 64 ms (at
            # 16 kHz) late. AVI cannot record them: its muxer would shift the video instead.
            frame.pts, frame.time_base = 0, Fraction(1, sample_rate)
        for packet in astream.encode(frame):
            container.mux(packet)
        for packet in astream.encode(None):
            container.mux(packet)
    container.close()
    return Path(path)
