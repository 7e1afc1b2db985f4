"""Media acceptance by probing: an allow-list of FFmpeg demuxers and codecs, local files only.

A file is accepted for what it is, not for its name: FFmpeg probes its content and the probe must
find one of `ACCEPTED_FORMATS` (the demuxer names of the usual video and audio containers), then
every stream used must carry a codec of `VIDEO_CODECS` / `AUDIO_CODECS`. So ``.oga`` (Ogg Vorbis
or Opus) is read like ``.ogg``, an ``.m4a`` like an ``.mp4``, and a PNG or a text file renamed
``.mp4`` is refused with the reason.

Why a demuxer allow-list and not "whatever FFmpeg opens": some demuxers open *other* files or
URLs named inside the input (HLS ``.m3u8`` playlists, ``ffconcat`` lists, DASH manifests, the
``tee``/``concat`` protocols), so a data folder could make a run read files it was never given or
reach the network. FFmpeg checks ``format_whitelist`` right after probing, before the demuxer
reads its header, and ``protocol_whitelist=file`` is inherited by every nested open, so neither
a playlist nor a URL is ever followed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmapps_domains.surveillance.errors import MediaError

# FFmpeg demuxer names (``AVInputFormat.name``); the mov demuxer's name is itself a list.
ACCEPTED_FORMATS = (
    "mov", "mp4", "m4a", "3gp", "3g2", "mj2", "matroska", "webm", "avi", "mpegts", "mpeg", "flv", "asf",
    "ogg", "wav", "w64", "flac", "mp3", "aac", "aiff",
)
VIDEO_CODECS = frozenset({
    "h264", "hevc", "mpeg4", "msmpeg4v2", "msmpeg4v3", "h263", "mpeg1video", "mpeg2video", "mjpeg", "vp8", "vp9",
    "libvpx", "libvpx-vp9", "av1", "libdav1d", "libaom-av1", "theora", "wmv1", "wmv2", "wmv3", "vc1", "prores",
    "dvvideo", "ffv1", "rawvideo",
})
AUDIO_CODECS = frozenset({
    "aac", "aac_fixed", "mp3", "mp3float", "mp2", "mp2float", "opus", "libopus", "vorbis", "libvorbis", "flac",
    "alac", "ac3", "eac3", "wmav1", "wmav2", "pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_s32le", "pcm_f32le",
    "pcm_f64le", "pcm_u8", "pcm_mulaw", "pcm_alaw", "adpcm_ima_wav", "adpcm_ms",
})
CONTAINER_OPTIONS = {"protocol_whitelist": "file", "format_whitelist": ",".join(ACCEPTED_FORMATS)}

_SIGNATURES = (  # the refused kinds a user most likely meant, named in the error
    (b"#EXTM3U", "an HLS/M3U playlist (it names other files or URLs)"),
    (b"ffconcat", "an FFmpeg concat list (it names other files)"),
    (b"[playlist]", "a PLS playlist (it names other files or URLs)"),
    (b"<?xml", "an XML document (a DASH manifest or SMIL playlist names other files or URLs)"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image or a raw MJPEG stream without a container"),
    (b"GIF8", "a GIF image"),
)


def _refused_kind(path: Path) -> str | None:
    """What a refused file is, from its first bytes, when it is a kind users mistake for media."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
    except OSError:
        return None
    return next((kind for signature, kind in _SIGNATURES if head.startswith(signature)), None)


def open_media(path: Path, what: str = "clip") -> Any:
    """Open a local media file with PyAV after probing its container against `ACCEPTED_FORMATS`.

    Args:
        path: a local file (never a URL or an FFmpeg protocol string).
        what: how the file is named in errors ("clip", "audio file").

    Returns:
        an open ``av`` input container (close it, or use it as a context manager).

    Raises:
        FileNotFoundError: no such file.
        MediaError: refused container, or a file FFmpeg cannot open (truncated, corrupt).
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path}: not found")
    accepted = "mp4/mov/m4a, mkv/webm, avi, mpeg-ts/ps, flv, asf/wmv, ogg/oga/opus, wav, flac, mp3, aac, aiff"
    try:
        # an absolute path always starts with "/", so FFmpeg never reads it as "protocol:..."
        return av.open(str(path.resolve()), container_options=dict(CONTAINER_OPTIONS))
    except (av.error.FFmpegError, UnicodeDecodeError) as err:
        kind = _refused_kind(path)
        if kind is not None or isinstance(err, av.error.ArgumentError):  # ArgumentError: the probe found a format off the list
            raise MediaError(
                f"{what} {path}: refused: its content is {kind or 'a format that is not on the accepted list'}. "
                f"Accepted containers (probed by content, whatever the suffix): {accepted}."
            ) from None
        raise MediaError(
            f"{what} {path}: FFmpeg cannot open it ({err}); the file is truncated, corrupt or not a media file. "
            f"Accepted containers (probed by content, whatever the suffix): {accepted}."
        ) from None


def check_codec(stream: Any, path: Path, what: str = "clip") -> str:
    """The codec name of a video or audio stream; `MediaError` when it is not on the allow-list."""
    name = stream.codec_context.name
    allowed = VIDEO_CODECS if stream.type == "video" else AUDIO_CODECS
    if name not in allowed:
        raise MediaError(f"{what} {path}: {stream.type} codec {name!r} not accepted; accepted: {', '.join(sorted(allowed))}")
    return name
