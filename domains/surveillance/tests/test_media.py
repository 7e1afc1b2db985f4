"""Readers on real media written here with PyAV / soundfile: h264, mpeg4, mjpeg, no audio, truncated."""

from pathlib import Path

import numpy as np
import pytest
import soundfile

from mmapps_domains.surveillance.encode import write_clip
from mmapps_domains.surveillance.errors import MediaError
from mmapps_domains.surveillance.stream import iter_media_windows, read_media
from mmapps_domains.surveillance.audio import log_mel, read_audio_file
from mmapps_domains.surveillance.windows import WindowSpec

FPS, SR = 8, 8000


def ramp_frames(n: int = 16, h: int = 32, w: int = 32) -> np.ndarray:
    """Frame i is uniformly gray level 10 * i, so sampled frames identify their source frame."""
    return np.stack([np.full((h, w, 3), (10 * i) % 250, np.uint8) for i in range(n)])


def tone(seconds: float, freq: float = 440.0, rate: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


SPEC = WindowSpec(window_s=1.0, frames_per_window=2, height=16, width=16, channels=1, sample_rate=SR, n_mels=8, mel_frames=4)


@pytest.mark.parametrize("codec,suffix,audio_codec", [
    ("h264", ".mp4", "aac"), ("mpeg4", ".avi", "aac"), ("mjpeg", ".mkv", "aac"), ("vp9", ".webm", "libopus"), ("hevc", ".mkv", "aac"),
])
def test_codecs_sample_the_frames_on_screen(tmp_path: Path, codec: str, suffix: str, audio_codec: str) -> None:
    path = write_clip(tmp_path / f"clip{suffix}", ramp_frames(), FPS, tone(2.0), SR, codec=codec, audio_codec=audio_codec)
    media = read_media(path, SPEC)
    assert media.frames.shape == (2, 2, 1, 16, 16)
    assert media.info.codec == codec
    assert media.duration == pytest.approx(2.0)
    # sampling times 0.25, 0.75, 1.25, 1.75 s at 8 fps -> source frames 2, 6, 10, 14 (gray 20, 60, 100, 140)
    levels = media.frames[:, :, 0].mean(axis=(2, 3)).reshape(-1)
    np.testing.assert_allclose(levels, [20, 60, 100, 140], atol=4)
    assert media.audio is not None and media.audio.shape == (2, SR)
    assert np.argmax(np.abs(np.fft.rfft(media.audio[1]))) == pytest.approx(440, abs=2)


def test_aac_padding_is_trimmed_and_tone_kept(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "clip.mp4", ramp_frames(), FPS, tone(2.0), SR)
    media = read_media(path, SPEC)
    assert media.audio.shape == (2, SR)  # AAC decodes more than 16000 samples: trimmed to the video
    spectrum = np.abs(np.fft.rfft(media.audio[1]))
    assert np.argmax(spectrum) == pytest.approx(440, abs=2)


@pytest.mark.parametrize("suffix,audio_codec", [(".mp4", "aac"), (".mkv", "aac"), (".webm", "libopus")])
def test_encoder_priming_does_not_delay_the_audio(tmp_path: Path, suffix: str, audio_codec: str) -> None:
    """Clicks written at 0.5 s and 1.3 s are read at 0.5 s and 1.3 s, not one AAC frame (1024 samples) later."""
    audio = np.zeros(2 * SR, np.float32)
    for at in (0.5, 1.3):
        audio[int(at * SR) : int(at * SR) + 40] = np.hanning(40) * 0.9
    media = read_media(write_clip(tmp_path / f"clicks{suffix}", ramp_frames(), FPS, audio, SR, codec={".mp4": "h264", ".mkv": "mjpeg", ".webm": "vp9"}[suffix], audio_codec=audio_codec), SPEC)
    track = media.audio.reshape(-1)
    for at in (0.5, 1.3):
        lo = int(at * SR) - SR // 4
        assert lo + np.argmax(np.abs(track[lo : lo + SR // 2])) - (int(at * SR) + 20) == pytest.approx(0, abs=8)


def test_audio_with_negative_start_time_is_cut_at_zero() -> None:
    from mmapps_domains.surveillance.audio import AudioWindowBuffer

    buffer = AudioWindowBuffer(SPEC)
    buffer.add(np.arange(SR + 100, dtype=np.float32), -100)  # priming samples stamped before 0
    (window,) = buffer.pop_windows()
    assert window[0] == 100 and buffer.available_until == SR


def test_clip_without_audio(tmp_path: Path) -> None:
    media = read_media(write_clip(tmp_path / "silent.mp4", ramp_frames(), FPS, None), SPEC)
    assert media.audio is None and media.frames.shape[0] == 2


@pytest.mark.parametrize("suffix,subtype", [(".wav", "PCM_16"), (".flac", "PCM_16"), (".ogg", "VORBIS")])
def test_separate_audio_file_is_resampled(tmp_path: Path, suffix: str, subtype: str) -> None:
    clip = write_clip(tmp_path / "silent.mp4", ramp_frames(), FPS, None)
    audio_path = tmp_path / f"mic{suffix}"
    soundfile.write(str(audio_path), tone(2.5, 1000.0, 22050), 22050, subtype=subtype)
    assert read_audio_file(audio_path, SR).shape[0] == pytest.approx(2.5 * SR, abs=SR // 50)
    media = read_media(clip, SPEC, audio_path=audio_path)
    assert media.audio.shape == (2, SR)  # longer file cut to the clip
    assert np.argmax(np.abs(np.fft.rfft(media.audio[0]))) == pytest.approx(1000, abs=3)


def test_truncated_and_garbage_files_give_clear_errors(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "clip.mp4", ramp_frames(), FPS, tone(2.0), SR)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(MediaError, match="cut.mp4"):
        read_media(cut, SPEC)
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"not a video" * 50)
    with pytest.raises(MediaError, match="junk.avi"):
        read_media(junk, SPEC)
    with pytest.raises(FileNotFoundError):
        read_media(tmp_path / "missing.mp4", SPEC)


def test_truncated_avi_is_detected(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "clip.mkv", ramp_frames(48), FPS, None, codec="mjpeg")
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(MediaError, match="cut.mkv"):
        read_media(cut, SPEC)


def test_streaming_windows_equal_whole_read(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "clip.mp4", ramp_frames(24), FPS, tone(3.0), SR)
    media = read_media(path, SPEC)
    items = list(iter_media_windows(path, SPEC))
    assert [i.index for i in items] == [0, 1, 2]
    np.testing.assert_array_equal(np.stack([i.frames for i in items]), media.frames)
    mel = log_mel(media.audio, SPEC)
    assert mel.shape == (3, 8, 4) and np.isfinite(mel).all()
    np.testing.assert_allclose(log_mel(items[1].audio[None], SPEC)[0], mel[1], atol=1e-6)


def test_read_video_matches_read_media(tmp_path: Path) -> None:
    from mmapps_domains.surveillance.video import read_video

    path = write_clip(tmp_path / "clip.mp4", ramp_frames(), FPS, tone(2.0), SR)
    frames, info, duration = read_video(path, SPEC)
    np.testing.assert_array_equal(frames, read_media(path, SPEC).frames)
    assert info.fps == FPS and duration == pytest.approx(2.0)


def test_audio_past_the_video_end_is_dropped(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "odd.mp4", ramp_frames(19), FPS, tone(3.0), SR)  # video 2.375 s, audio 3 s
    media = read_media(path, SPEC)
    assert media.frames.shape[0] == 3 and media.duration == pytest.approx(2.375)
    last = media.audio[2]
    assert np.abs(last[: int(0.3 * SR)]).max() > 0.2 and np.abs(last[int(0.375 * SR) :]).max() == 0.0
