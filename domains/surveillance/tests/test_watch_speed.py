"""The fast decode path gives the numbers of the plain one: one swscale context per stream, audio passthrough, prefetch."""

from pathlib import Path

import av
import numpy as np
import pytest
from mmapps_domains.surveillance.audio import (
    MonoConverter,
    make_resampler,
    resampled_samples,
)
from mmapps_domains.surveillance.encode import write_clip
from mmapps_domains.surveillance.prefetch import prefetched
from mmapps_domains.surveillance.stream import read_media
from mmapps_domains.surveillance.windows import WindowSpec


def _textured(n: int, h: int = 240, w: int = 320) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = (rng.random((h // 4, w // 4, 3)) * 255).astype(np.uint8).repeat(4, 0).repeat(4, 1)
    return np.stack([np.roll(base, 5 * i, axis=1) for i in range(n)])


@pytest.mark.parametrize("channels", [1, 3])
def test_sampled_frames_equal_a_per_frame_area_reformat(tmp_path: Path, channels: int) -> None:
    """Frames sampled through the stream's one VideoReformatter equal ``frame.reformat(..., AREA)`` of the frame on screen."""
    spec = WindowSpec(window_s=1.0, frames_per_window=4, height=24, width=32, channels=channels, sample_rate=8000, n_mels=8, mel_frames=4)
    path = write_clip(tmp_path / "tex.mp4", _textured(20), 10, None)
    media = read_media(path, spec)
    with av.open(str(path)) as container:
        decoded = [(float(f.time), f) for f in container.decode(video=0)]
    expected = []
    for w in range(media.frames.shape[0]):
        for t in spec.frame_times(w):
            frame = [f for ft, f in decoded if ft <= t][-1]
            img = frame.reformat(width=32, height=24, format="gray" if channels == 1 else "rgb24", interpolation="AREA").to_ndarray()
            expected.append(img[None] if img.ndim == 2 else img.transpose(2, 0, 1))
    np.testing.assert_array_equal(media.frames.reshape(-1, channels, 24, 32), np.stack(expected))
    assert media.frames.std() > 10  # textured: a wrong filter or frame would show


def test_audio_passthrough_equals_the_resampler(tmp_path: Path) -> None:
    """A mono float track at the target rate is copied; the samples equal FFmpeg's resampler output."""
    t = np.arange(16000) / 16000
    path = write_clip(tmp_path / "a.mp4", _textured(10, 32, 32), 10, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    with av.open(str(path)) as container:
        frames = list(container.decode(audio=0))
    convert, resampler = MonoConverter(16000), make_resampler(16000)
    fast = np.concatenate([convert(f) for f in frames] + [convert(None)])
    slow = np.concatenate([resampled_samples(resampler, f) for f in frames] + [resampled_samples(resampler, None)])
    assert convert.passthrough and fast.shape == slow.shape
    np.testing.assert_array_equal(fast, slow)
    other = MonoConverter(8000)
    assert other(frames[0]).size < frames[0].samples and not other.passthrough  # resampled when the rate differs


def test_prefetched_keeps_order_errors_and_closes() -> None:
    assert list(prefetched(iter(range(50)), depth=3)) == list(range(50))

    def failing():
        yield 1
        yield 2
        raise ValueError("corrupt stream after 2 s")

    seen = []
    with pytest.raises(ValueError, match="corrupt stream"):
        for x in prefetched(failing()):
            seen.append(x)
    assert seen == [1, 2]
    closed = []

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.append(True)

    stream = prefetched(endless(), depth=2)
    assert [next(stream) for _ in range(5)] == [0, 1, 2, 3, 4]
    stream.close()
    assert closed == [True]
