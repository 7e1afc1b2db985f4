"""One pass over a clip (and an optional separate audio file) yielding aligned windows as they arrive.

Both `read_media` (datasets, evaluation) and ``watch`` (streaming inference) use this single code
path, so the features a model sees offline and live are the same numbers. Memory is bounded by the
interleaving distance of the container's audio and video packets, not by the clip length.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

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
    import av

    path = Path(path)
    container = open_container(path)
    try:
        info = video_info(container, path)
        vstream = container.streams.video[0]
        vstream.thread_type = "AUTO"
        own_audio = with_audio and audio_path is None and bool(container.streams.audio)
        streams = [vstream] + ([container.streams.audio[0]] if own_audio else [])
        if own_audio:
            check_codec(streams[1], path)
        sampler, abuf = VideoWindowSampler(spec), AudioWindowBuffer(spec)
        file_blocks = iter_audio_file(audio_path, spec.sample_rate) if with_audio and audio_path else None
        has_audio = own_audio or file_blocks is not None
        convert = MonoConverter(spec.sample_rate) if own_audio else None
        ready: deque = deque()
        audio_started, end_time = False, 0.0

        def emit(limit: int | None, final: bool) -> Iterator[MediaWindow]:
            while ready:
                w, frames = ready[0]
                if not final and end_time < (w + 1) * spec.window_s - 1e-9:
                    return  # the video may end inside this window: its audio is trimmed at the end
                if has_audio and not final:
                    while file_blocks is not None and abuf.available_until < (w + 1) * spec.samples_per_window:
                        block = next(file_blocks, None)
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
                    if packet.stream.type == "video":
                        end_time = max(end_time, float(frame.time) + 1.0 / info.fps)
                        ready.extend(sampler.feed(frame, float(frame.time)))
                    else:
                        samples = convert(frame)
                        if not audio_started:
                            abuf.add(samples, int(round(float(frame.time) * spec.sample_rate)))
                            audio_started = True
                        else:
                            abuf.add(samples, abuf.available_until)
                yield from emit(None, final=False)
        except av.error.FFmpegError as err:
            raise MediaError(f"clip {path}: corrupt stream after {end_time:.2f} s ({err})") from None
        if end_time == 0.0:
            raise MediaError(f"clip {path}: no video frame could be decoded (truncated or corrupt {info.codec} stream)")
        check_complete(path, info, end_time)
        if convert is not None:
            abuf.add(convert(None), abuf.available_until)
        if file_blocks is not None:
            for block in file_blocks:
                abuf.add(block, abuf.available_until)
        ready.extend(sampler.finish(end_time))
        yield from emit(None, final=True)
    finally:
        container.close()


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
