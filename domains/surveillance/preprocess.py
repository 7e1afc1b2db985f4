"""Per-clip preprocessing shared by datasets and ``watch``: windows of frames, log-mels, chat vectors.

Results are cached (``cfg.data.cache_dir/surveillance/<clip>-<key>.npz``) so that epochs never decode
video again; the key hashes the input files (path, size, mtime) and the window settings.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mmapps.data import IssueLog
from mmapps_domains.surveillance.annotations import ClipEntry, read_features
from mmapps_domains.surveillance.audio import log_mel
from mmapps_domains.surveillance.chat import messages_per_window, read_chat
from mmapps_domains.surveillance.stream import read_media
from mmapps_domains.surveillance.text_embed import window_chat_vectors
from mmapps_domains.surveillance.windows import WindowSpec, resample_features


@dataclass
class ClipFeatures:
    """A clip's model inputs, cut into W windows."""

    frames: np.ndarray  # uint8 (W, F, C, H, W')
    mel: np.ndarray | None  # float32 (W, n_mels, mel_frames)
    chat: np.ndarray | None  # float32 (W, 385)
    features: np.ndarray | None  # float32 (W, F)
    duration: float
    fps: float


def _file_key(path: Path | None) -> list:
    if path is None:
        return [None]
    stat = Path(path).stat()
    return [str(path), stat.st_size, stat.st_mtime_ns]


def cache_key(entry: ClipEntry, spec: WindowSpec) -> str:
    parts = [_file_key(p) for p in (entry.clip, entry.audio, entry.chat, entry.features)] + [entry.start_time, asdict(spec), 3]
    return hashlib.sha1(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def chat_vectors(path: Path, issues: IssueLog, start_time: str | None, duration: float, n_windows: int, spec: WindowSpec) -> np.ndarray:
    """Per-window chat vectors (W, 385) of a chat log (bad lines reported to ``issues``)."""
    messages = read_chat(path, issues, start_time=start_time, duration=duration)
    return window_chat_vectors(messages_per_window(messages, n_windows, spec.window_s))


def compute_clip_features(entry: ClipEntry, spec: WindowSpec, issues: IssueLog, require_audio: bool = False) -> ClipFeatures:
    """Decode and featurise one clip.

    Raises:
        MediaError / ValueError: unreadable clip, audio or features (the caller reports the issue).
    """
    media = read_media(entry.clip, spec, audio_path=entry.audio)
    if media.audio is None and require_audio:
        raise ValueError(f"clip {entry.clip}: has no audio track and the manifest gives no audio file (data.options.require_audio is true)")
    n_windows = media.frames.shape[0]
    mel = log_mel(media.audio, spec) if media.audio is not None else None
    chat = chat_vectors(entry.chat, issues, entry.start_time, media.duration, n_windows, spec) if entry.chat else None
    feats = None
    if entry.features is not None:
        feats = resample_features(read_features(entry.features), media.duration, n_windows, spec.window_s)
    return ClipFeatures(media.frames, mel, chat, feats, media.duration, media.info.fps)


def load_clip_features(entry: ClipEntry, spec: WindowSpec, issues: IssueLog, cache_dir: Path | None, require_audio: bool = False) -> ClipFeatures:
    """`compute_clip_features` through the on-disk cache (when ``cache_dir`` is set)."""
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / "surveillance" / f"{entry.clip_id}-{cache_key(entry, spec)}.npz"
        if path.is_file():
            with np.load(path, allow_pickle=False) as data:
                get = lambda k: data[k] if k in data.files else None  # noqa: E731
                return ClipFeatures(data["frames"], get("mel"), get("chat"), get("features"), float(data["duration"]), float(data["fps"]))
    clip = compute_clip_features(entry, spec, issues, require_audio)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {k: v for k, v in (("mel", clip.mel), ("chat", clip.chat), ("features", clip.features)) if v is not None}
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, frames=clip.frames, duration=clip.duration, fps=clip.fps, **arrays)
        tmp.replace(path)
    return clip
