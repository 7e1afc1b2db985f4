"""Video reading: decode any FFmpeg container/codec with PyAV, sample low-resolution frames per window.

Frames are sampled at fixed times (``WindowSpec.frame_times``): each sample is the frame on screen
at that time (the last decoded frame whose timestamp is <= the sampling time), so the result does
not depend on the native frame rate or on variable frame timing. Only sampled frames are
converted, each once, by one FFmpeg swscale call from the decoded format and size straight to the
model's (gray or RGB, ``frame_size``; area filter, one swscale context per stream); decoder
threads are on (``thread_type="AUTO"``). Training, evaluation and ``watch`` all sample
through this one class, so their frames are the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from mmapps_domains.surveillance.errors import MediaError
from mmapps_domains.surveillance.probe import check_codec, open_media
from mmapps_domains.surveillance.windows import WindowSpec


@dataclass
class VideoInfo:
    """What the container says about its video stream."""

    fps: float
    declared_duration: float | None
    codec: str
    width: int
    height: int


def open_container(path: Path) -> Any:
    """Open a clip with PyAV after probing it (`probe.open_media`: accepted containers, local files only)."""
    return open_media(path, "clip")


def video_info(container: Any, path: Path) -> VideoInfo:
    """Describe the first video stream of an open container; `MediaError` when there is none."""
    if not container.streams.video:
        raise MediaError(f"clip {path}: has no video stream (streams found: {[s.type for s in container.streams]})")
    stream = container.streams.video[0]
    check_codec(stream, path)
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 25.0
    declared = None
    if stream.duration is not None and stream.time_base is not None:
        declared = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        declared = container.duration / 1_000_000
    return VideoInfo(fps, declared, stream.codec_context.name, stream.codec_context.width, stream.codec_context.height)


class VideoWindowSampler:
    """Turns decoded frames, fed in order, into per-window stacks of sampled frames.

    ``feed(frame)`` returns the windows completed by that frame; ``finish(end_time)`` returns the
    rest. Memory stays bounded: one pending window and the last frame are held. A frame is
    converted only when a sampling time falls on it, once however many slots it fills, by one
    swscale call straight from the decoder's format and size to the model's, area filter, through
    one `VideoReformatter` kept for the stream: ``frame.reformat`` builds a new swscale context
    (filter tables for 1280 -> 32 px) on every call, which cost 3x the scaling itself at 720p.
    """

    def __init__(self, spec: WindowSpec) -> None:
        self.spec = spec
        self.window = 0
        self.slots: list[np.ndarray] = []
        self.last_frame: Any = None
        self.last_time = -1.0
        self._last_scaled: np.ndarray | None = None  # the conversion of last_frame, once made
        self._next_time = spec.frame_time(0, 0)
        self._format = "gray" if spec.channels == 1 else "rgb24"
        self._reformatter: Any = None

    def _scaled(self) -> np.ndarray:
        if self._last_scaled is None:
            if self._reformatter is None:
                from av.video.reformatter import VideoReformatter

                self._reformatter = VideoReformatter()
            scaled = self._reformatter.reformat(self.last_frame, width=self.spec.width, height=self.spec.height, format=self._format, interpolation="AREA")
            img = scaled.to_ndarray()
            self._last_scaled = img[None] if img.ndim == 2 else img.transpose(2, 0, 1)  # (C, H, W)
        return self._last_scaled

    def _fill_until(self, time: float) -> list[tuple[int, np.ndarray]]:
        """Assign the last frame to every sampling time before ``time``; return completed windows."""
        done = []
        while self.last_frame is not None and self._next_time < time:
            self.slots.append(self._scaled())
            if len(self.slots) == self.spec.frames_per_window:
                done.append((self.window, np.stack(self.slots)))  # (F, C, H, W)
                self.window += 1
                self.slots = []
            self._next_time = self.spec.frame_time(self.window, len(self.slots))
        return done

    def feed(self, frame: Any, time: float) -> list[tuple[int, np.ndarray]]:
        """Feed one decoded frame shown from ``time`` seconds; returns completed (window, frames)."""
        done = self._fill_until(time)
        self.last_frame, self.last_time, self._last_scaled = frame, time, None
        return done

    def finish(self, end_time: float) -> list[tuple[int, np.ndarray]]:
        """Flush at the end of the stream (``end_time`` = last frame time + its duration)."""
        done = self._fill_until(end_time)
        if self.slots and self.last_frame is not None:
            while len(self.slots) < self.spec.frames_per_window:
                self.slots.append(self._scaled())
            done.append((self.window, np.stack(self.slots)))
            self.window += 1
            self.slots = []
        return done


def check_complete(path: Path, info: VideoInfo, decoded_end: float) -> None:
    """Raise `MediaError` when far less video decoded than the container declares (truncated file)."""
    if info.declared_duration and decoded_end < 0.9 * info.declared_duration - 2.0 / info.fps:
        raise MediaError(
            f"clip {path}: truncated or corrupt video: decoded {decoded_end:.2f} s of the "
            f"{info.declared_duration:.2f} s its container declares ({info.codec})"
        )


def read_video(path: Path, spec: WindowSpec) -> tuple[np.ndarray, VideoInfo, float]:
    """Read a whole clip's sampled frames (video only; see `stream.iter_media_windows` for audio too).

    Args:
        path: any FFmpeg-readable clip.
        spec: window and sampling settings.

    Returns:
        (frames uint8 (W, F, C, H, W'), stream info, decoded duration in seconds).

    Raises:
        MediaError: unreadable, truncated or video-less file.
    """
    from mmapps_domains.surveillance.stream import iter_media_windows

    windows, info, duration = [], None, 0.0
    for item in iter_media_windows(path, spec, with_audio=False):
        windows.append(item.frames)
        info, duration = item.info, item.duration
    return np.stack(windows), info, duration
