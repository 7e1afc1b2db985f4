"""Media accepted by probing its content (not its suffix), local files only: playlists and lists of other files refused."""

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile
from mmapps_domains.surveillance.audio import read_audio_file
from mmapps_domains.surveillance.encode import write_clip
from mmapps_domains.surveillance.errors import MediaError
from mmapps_domains.surveillance.stream import read_media
from mmapps_domains.surveillance.windows import WindowSpec

SR = 8000
SPEC = WindowSpec(window_s=1.0, frames_per_window=2, height=16, width=16, channels=1, sample_rate=SR, n_mels=8, mel_frames=4)


def tone(seconds: float, freq: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def frames(n: int = 16) -> np.ndarray:
    return np.stack([np.full((32, 32, 3), 10 * i, np.uint8) for i in range(n)])


def write_audio_av(path: Path, codec: str, rate: int, audio: np.ndarray) -> Path:
    """An audio-only file written by PyAV (FFmpeg's muxers), the way ffmpeg -i x.wav out.m4a writes it."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(audio[None], format="flt", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, 0, Fraction(1, rate)
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


@pytest.mark.parametrize("name,writer", [
    ("mic.oga", lambda p, a: soundfile.write(str(p), a, 22050, format="OGG", subtype="VORBIS")),  # refused by suffix before
    ("mic.ogg", lambda p, a: soundfile.write(str(p), a, 22050, format="OGG", subtype="VORBIS")),
    ("mic.opus", lambda p, a: write_audio_av(p, "libopus", 48000, tone(2.5, 1000.0, 48000))),
    ("mic.m4a", lambda p, a: write_audio_av(p, "aac", 22050, a)),
    ("mic.wav", lambda p, a: soundfile.write(str(p), a, 22050, subtype="PCM_16")),
    ("recording.bin", lambda p, a: soundfile.write(str(p), a, 22050, format="FLAC", subtype="PCM_16")),  # content decides, not the name
])
def test_audio_files_accepted_by_content(tmp_path: Path, name: str, writer) -> None:
    path = tmp_path / name
    writer(path, tone(2.5, 1000.0, 22050))
    samples = read_audio_file(path, SR)
    assert samples.shape[0] == pytest.approx(2.5 * SR, abs=SR // 10)
    assert np.argmax(np.abs(np.fft.rfft(samples[: SR]))) == pytest.approx(1000, abs=3)
    media = read_media(write_clip(tmp_path / "silent.mp4", frames(), 8, None), SPEC, audio_path=path)
    assert media.audio.shape == (2, SR) and np.abs(media.audio).max() > 0.1


def test_playlists_and_lists_of_other_files_are_refused(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "real.mp4", frames(), 8, tone(2.0, 440.0, SR), SR)
    secret = tmp_path / "secret.wav"
    soundfile.write(str(secret), tone(1.0, 300.0, SR), SR)
    hls = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n{}\n#EXTINF:2,\nhttp://127.0.0.1:9/x.ts\n#EXT-X-ENDLIST\n"
    cases = {
        "playlist.m3u8": (hls.format(clip.name), "HLS"),
        "playlist.mp4": (hls.format(clip), "HLS"),  # renamed: the content is probed, not the suffix
        "list.ffconcat": (f"ffconcat version 1.0\nfile {clip.name}\n", "concat list"),
        "list.mkv": (f"ffconcat version 1.0\nfile {secret.name}\n", "concat list"),
    }
    for name, (text, kind) in cases.items():
        (tmp_path / name).write_text(text)
        if name.endswith((".m3u8", ".ffconcat")):
            with av.open(str(tmp_path / name)) as unrestricted:  # plain FFmpeg follows them to the files they name
                assert unrestricted.format.name in ("hls", "concat")
        with pytest.raises(MediaError, match=f"{name}.*refused.*{kind}"):
            read_media(tmp_path / name, SPEC)
        with pytest.raises(MediaError, match=f"{name}.*refused"):
            read_audio_file(tmp_path / name, SR)
    with pytest.raises(MediaError, match="refused.*PNG"):
        import PIL.Image

        PIL.Image.fromarray(frames(1)[0]).save(tmp_path / "still.png")
        (tmp_path / "still.png").rename(tmp_path / "still.mp4")
        read_media(tmp_path / "still.mp4", SPEC)


def test_protocol_strings_are_local_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A manifest path like ``concat:a.mp4|b.mp4`` is a (missing) local file, never an FFmpeg protocol."""
    write_clip(tmp_path / "a.mp4", frames(), 8, None)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError):
        read_media(Path("concat:a.mp4|a.mp4"), SPEC)


def test_codec_outside_the_allow_list_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "png_frames.avi"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("png", rate=8)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "rgb24"
        for img in frames(8):
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(MediaError, match="video codec 'png' not accepted"):
        read_media(path, SPEC)


def test_audio_file_without_audio_stream(tmp_path: Path) -> None:
    silent = write_clip(tmp_path / "silent.mp4", frames(), 8, None)
    with pytest.raises(MediaError, match="has no audio stream"):
        read_audio_file(silent, SR)
