"""Surveillance decode throughput: 720p h264 video -> sampled low-res windows, and audio -> log-mel.

Writes a synthetic 1280x720 25 fps h264 + 16 kHz AAC clip with PyAV, then times
`stream.read_media` (decode + frame sampling + audio resampling) and `audio.log_mel`.

Usage: python benchmarks/surveillance_decode.py [--seconds 20] [--repeats 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, table, write_results  # noqa: E402


def write_720p_clip(path: Path, seconds: float, fps: int = 25, sr: int = 16000) -> Path:
    """A moving-gradient 1280x720 clip with a tone + noise track (written by PyAV)."""
    from mmapps_domains.surveillance.encode import write_clip

    n = int(seconds * fps)
    x = np.linspace(0, 255, 1280, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, 720, dtype=np.float32)[:, None, None]
    loop = [np.clip((x + 10 * i) % 255 * 0.5 + y * 0.5, 0, 255).astype(np.uint8).repeat(3, 2) for i in range(fps)]
    frames = (loop[i % fps] for i in range(n))  # a 1 s motion loop, streamed into the encoder
    t = np.arange(int(seconds * sr)) / sr
    audio = (0.2 * np.sin(2 * np.pi * 440 * t) + 0.02 * np.random.default_rng(0).normal(size=t.size)).astype(np.float32)
    return write_clip(path, frames, fps, audio, sr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the log-mel")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from mmapps_domains.surveillance.audio import log_mel
    from mmapps_domains.surveillance.options import SurveillanceDataOptions
    from mmapps_domains.surveillance.stream import read_media

    spec = SurveillanceDataOptions().window_spec()
    with tempfile.TemporaryDirectory() as tmp:
        clip = write_720p_clip(Path(tmp) / "clip720.mp4", args.seconds)
        decode = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            media = read_media(clip, spec)
            decode.append(time.perf_counter() - started)
        started = time.perf_counter()
        for _ in range(args.repeats):
            log_mel(media.audio, spec)
        mel_s = (time.perf_counter() - started) / args.repeats
    best = min(decode)
    native_frames = args.seconds * 25
    rows = [
        ["decode + sample 720p h264 (native frames/s)", native_frames / best],
        ["decode + sample 720p h264 (x real time)", args.seconds / best],
        ["sampled frames/s (4 per window, 32x32 gray)", media.frames.shape[0] * media.frames.shape[1] / best],
        ["log-mel (seconds of audio per s)", args.seconds / mel_s],
    ]
    markdown = f"# Surveillance decode throughput\n\n{args.seconds:.0f} s clip, 1280x720 25 fps h264 + 16 kHz AAC, best of {args.repeats}, torch threads {args.threads}.\n\n" + table(["measure", "value"], rows) + "\n"
    path = write_results("surveillance_decode", {"machine": machine(), "rows": rows}, markdown)
    print(markdown)
    print(f"written: {path}")


if __name__ == "__main__":
    main()
