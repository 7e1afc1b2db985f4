"""Size caps read from file headers before anything is decoded (decompression bombs stop here).

Runs inside the decoder child. ``caps``: ``max_pixels`` (per image or video frame, all frames of
a DICOM together), ``max_frames`` (video), ``max_points`` (point cloud).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

DICOM_SUFFIXES = (".dcm", ".dicom")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".ts", ".avi", ".webm")


class Refused(Exception):
    """An input the decoder refuses; ``kind`` is the error class, the message is safe to show."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _refuse(kind: str, message: str) -> Refused:
    return Refused(kind, message)


def check_file(path: Path, caps: dict[str, int]) -> None:
    suffix = path.suffix.lower()
    if suffix in DICOM_SUFFIXES:
        _check_dicom(path, caps.get("max_pixels", 0))
    elif suffix in IMAGE_SUFFIXES:
        _check_image(path, caps.get("max_pixels", 0))
    elif suffix in VIDEO_SUFFIXES:
        _check_video(path, caps.get("max_frames", 0), caps.get("max_pixels", 0))
    elif suffix in (".bin", ".pcd", ".ply"):
        _check_points(path, caps.get("max_points", 0))


def _check_dicom(path: Path, max_pixels: int) -> None:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        frames = int(str(ds.get("NumberOfFrames", 1) or 1))
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
    except (InvalidDicomError, EOFError, OSError, ValueError, TypeError, AttributeError, KeyError) as err:
        raise _refuse("bad_dicom", f"DICOM file {path.name}: not a readable DICOM Part 10 file ({type(err).__name__}); "
                      "accepted: DICOM CR/DX images (with the 128-byte preamble and 'DICM') in a transfer syntax pydicom decodes") from None
    total = rows * cols * frames * samples
    if max_pixels and total > max_pixels:
        raise _refuse("too_large", f"DICOM file {path.name}: {rows} x {cols} pixels x {frames} frame(s) x {samples} sample(s) = {total} values, "
                      f"over the cap of {max_pixels} (--max-pixels)")


def _check_image(path: Path, max_pixels: int) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise _refuse("bad_image", f"image {path.name}: not a readable image ({type(err).__name__}); accepted: PNG or JPEG") from None
    if max_pixels and width * height > max_pixels:
        raise _refuse("too_large", f"image {path.name}: {width} x {height} pixels, over the cap of {max_pixels} (--max-pixels)")


def _check_video(path: Path, max_frames: int, max_pixels: int) -> None:
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise _refuse("bad_video", f"video {path.name}: no video stream; accepted: MP4 / MPEG-TS with H.264 (or another codec FFmpeg decodes)")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            rate = float(stream.average_rate or 0) or 30.0
            seconds = float(stream.duration * stream.time_base) if stream.duration else (container.duration or 0) / 1e6
            frames = stream.frames or int(seconds * rate)
    except av.error.FFmpegError as err:
        raise _refuse("bad_video", f"video {path.name}: FFmpeg cannot open it ({type(err).__name__}); the file may be truncated; "
                      "accepted: complete MP4 (moov atom present) or MPEG-TS files") from None
    if max_pixels and width * height > max_pixels:
        raise _refuse("too_large", f"video {path.name}: {width} x {height} pixels per frame, over the cap of {max_pixels} (--max-pixels)")
    if max_frames and frames > max_frames:
        raise _refuse("too_large", f"video {path.name}: about {frames} frames, over the cap of {max_frames} (--max-frames)")


def _check_points(path: Path, max_points: int) -> None:
    count = _point_count(path)
    if max_points and count is not None and count > max_points:
        raise _refuse("too_large", f"point cloud {path.name}: {count} points, over the cap of {max_points} (--max-points)")


def _point_count(path: Path) -> int | None:
    suffix = path.suffix.lower()
    if suffix == ".bin":
        return path.stat().st_size // 16  # at least 4 float32 per point (KITTI); wider layouts have fewer
    with open(path, "rb") as handle:
        head = handle.read(4096).decode("latin-1", "replace")
    key = "POINTS" if suffix == ".pcd" else "element vertex"
    for line in head.splitlines():
        if line.startswith(key):
            try:
                return int(line[len(key):].split()[0])
            except (ValueError, IndexError):
                return None
    return None


def describe(caps: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(caps.items()))
