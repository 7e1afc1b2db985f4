"""One pass over a clip (and an optional separate audio file) yielding aligned windows as they arrive.

Both `read_media` (datasets, evaluation) and ``watch`` (streaming inference) use this single code
path, so the features a model sees offline and live are the same numbers. Memory is bounded by the
interleaving distance of the container's audio and video packets, not by the clip length.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from mmapps_domains.surveillance.audio import AudioWindowBuffer, MonoConverter, iter_audio_file
from mmapps_domains.surveillance.probe import check_codec
from mmapps_domains.surveillance.errors import MediaError
from mmapps_domains.surveillance.video import VideoInfo, VideoWindowSampler, check_complete, open_container, video_info
from mmapps_domains.surveillance.windows import WindowSpec


@dataclass
class MediaWindow:
    """One window of a clip: sampled frames uint8 (F, C, H, W) and raw audio float32 (S,) or None."""

    index: int
    start: float
    frames: np.ndarray
    audio: np.ndarray | None
    info: VideoInfo
    duration: float  # decoded video duration so far (final on the last window)


@dataclass
class ClipMedia:
    """A whole clip cut into windows."""

    frames: np.ndarray  # uint8 (W, F, C, H, W')
    audio: np.ndarray | None  # float32 (W, S) or None without audio
    info: VideoInfo
    duration: float


def iter_media_windows(
    path: Path, spec: WindowSpec, audio_path: Path | None = None, with_audio: bool = True
) -> Iterator[MediaWindow]:
    """Yield the windows of a clip in order as soon as their frames and audio are decoded.

    Args:
        path: the clip (any FFmpeg container/codec).
        spec: window and sampling settings.
        audio_path: separate audio file (any accepted container, probed) that replaces the clip's own track.
        with_audio: False to ignore audio entirely.

    Raises:
        MediaError: unreadable, corrupt or truncated clip.
    """
    path = Path(path)
    container = open_container(path)
    try:
        if container.streams.video:
            container.streams.video[0].thread_type = "AUTO"  # frame threads: a file is read ahead anyway
        blocks = iter_audio_file(audio_path, spec.sample_rate) if with_audio and audio_path else None
        yield from decode_windows(container, spec, f"clip {path}", where=path, audio_blocks=blocks,
                                  with_audio=with_audio and audio_path is None, check_end=lambda info, end: check_complete(path, info, end))
    finally:
        container.close()


def decode_windows(
    container: Any, spec: WindowSpec, label: str, *, where: Path | None = None, audio_blocks: Iterator[np.ndarray] | None = None,
    with_audio: bool = True, align_origin: bool = False, check_end: Callable[[VideoInfo, float], None] | None = None,
) -> Iterator[MediaWindow]:
    """The windows of an open PyAV container, in order, each as soon as its frames and audio are decoded.

    The one demux loop behind `iter_media_windows` (files) and the live endpoint (a stream of
    segments read as one container), so offline and live windows are the same numbers.

    Args:
        container: an open PyAV input container.
        spec: window and sampling settings.
        label: how messages name the source ("clip PATH", "live stream").
        where: the path for codec checks' messages (default: ``label``).
        audio_blocks: mono float32 blocks at ``spec.sample_rate`` of a separate recording; replaces the container's audio.
        with_audio: read the container's own audio track when it has one.
        align_origin: time 0 is the first decoded frame's time rounded down to a whole window (a live
            stream's timestamps need not start at 0); otherwise the container's own times.
        check_end: called with the stream's `VideoInfo` and the decoded end time before the last windows
            (e.g. `video.check_complete` refusing a truncated file).

    Raises:
        MediaError: no video stream, an unsupported codec, corrupt data.
    """
    import av

    where = where if where is not None else Path(label)
    info = video_info(container, where)
    vstream = container.streams.video[0]
    own_audio = with_audio and audio_blocks is None and bool(container.streams.audio)
    streams = [vstream] + ([container.streams.audio[0]] if own_audio else [])
    if own_audio:
        check_codec(streams[1], where)
    sampler, abuf = VideoWindowSampler(spec), AudioWindowBuffer(spec)
    has_audio = own_audio or audio_blocks is not None
    convert = MonoConverter(spec.sample_rate) if own_audio else None
    ready: deque = deque()
    origin: float | None = None if align_origin else 0.0
    audio_started, end_time = False, 0.0

    def emit(final: bool) -> Iterator[MediaWindow]:
        while ready:
            w, frames = ready[0]
            if not final and end_time < (w + 1) * spec.window_s - 1e-9:
                return  # the video may end inside this window: its audio is trimmed at the end
            if has_audio and not final:
                while audio_blocks is not None and abuf.available_until < (w + 1) * spec.samples_per_window:
                    block = next(audio_blocks, None)
                    if block is None:
                        break
                    abuf.add(block, abuf.available_until)
                if abuf.available_until < (w + 1) * spec.samples_per_window:
                    return
            audio = None
            if has_audio:
                got = abuf.pop_windows(w + 1) if not final else abuf.finish(w + 1, int(round(end_time * spec.sample_rate)))
                audio = got[-1] if got else np.zeros(spec.samples_per_window, np.float32)
            ready.popleft()
            yield MediaWindow(w, w * spec.window_s, frames, audio, info, end_time)

    try:
        for packet in container.demux(*streams):
            for frame in packet.decode():
                if frame.time is None:
                    continue
                if origin is None:
                    origin = math.floor(float(frame.time) / spec.window_s + 1e-9) * spec.window_s
                t = float(frame.time) - origin
                if packet.stream.type == "video":
                    end_time = max(end_time, t + 1.0 / info.fps)
                    ready.extend(sampler.feed(frame, t))
                else:
                    samples = convert(frame)
                    abuf.add(samples, abuf.available_until if audio_started else int(round(t * spec.sample_rate)))
                    audio_started = True
            yield from emit(final=False)
    except av.error.FFmpegError as err:
        raise MediaError(f"{label}: corrupt stream after {end_time:.2f} s ({err})") from None
    if end_time == 0.0:
        raise MediaError(f"{label}: no video frame could be decoded (truncated or corrupt {info.codec} stream)")
    if check_end is not None:
        check_end(info, end_time)
    if convert is not None:
        abuf.add(convert(None), abuf.available_until)
    for block in audio_blocks if audio_blocks is not None else ():
        abuf.add(block, abuf.available_until)
    ready.extend(sampler.finish(end_time))
    yield from emit(final=True)


def read_media(path: Path, spec: WindowSpec, audio_path: Path | None = None, with_audio: bool = True) -> ClipMedia:
    """Read a whole clip into windows (see `iter_media_windows`).

    Returns:
        `ClipMedia` with frames (W, F, C, H, W') and audio (W, S) or None when the clip has no audio.
    """
    frames, audio, last = [], [], None
    for item in iter_media_windows(path, spec, audio_path, with_audio):
        frames.append(item.frames)
        if item.audio is not None:
            audio.append(item.audio)
        last = item
    if last is None:
        raise MediaError(f"clip {path}: no window could be read")
    return ClipMedia(np.stack(frames), np.stack(audio) if audio else None, last.info, last.duration)
