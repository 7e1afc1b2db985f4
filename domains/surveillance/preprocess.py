"""Per-clip preprocessing shared by datasets and ``watch``: windows of frames, log-mels, chat vectors.

Results go through the core preprocessed-sample cache (`mmapps.data.cache`, namespace
``surveillance``: signed safetensors entries keyed by the input files' path, size and mtime and the
window settings) so that epochs and later runs never decode video again. With the cache off
(``cache.enabled=false``), the results of recent clips are kept in memory for the process
(`ClipMemo`), so that a benchmark's many runs over the same clips decode them once. Either way the issues found
while reading a clip (bad chat lines) are stored with its features and reported again on every
read, so a run's summary counts them whether or not the clip came from a cache.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmapps.data import IssueLog
from mmapps.data.cache import SampleCache
from mmapps.data.issues import SampleIssue
from mmapps_domains.surveillance.annotations import ClipEntry, read_features
from mmapps_domains.surveillance.audio import iter_audio_file, log_mel
from mmapps_domains.surveillance.chat import ChatLogError, messages_per_window, read_chat
from mmapps_domains.surveillance.errors import MediaError
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


# The entry layout of clip features; the code that computes them is keyed by `code_digest` (any edit misses).
FEATURES_VERSION = 5
_FEATURE_MODULES = ("preprocess", "stream", "video", "audio", "chat", "text_embed", "windows", "annotations")


def open_clip_cache(cfg: Any) -> SampleCache | None:
    """The surveillance namespace of the core cache for a run (None when ``cache.enabled`` is false)."""
    from mmapps.data.cache import code_digest, open_cache

    code = code_digest(*(f"mmapps_domains.surveillance.{m}" for m in _FEATURE_MODULES))
    return open_cache(cfg, "surveillance", {"features": FEATURES_VERSION, "code": code})


def cache_key(entry: ClipEntry, spec: WindowSpec) -> str:
    """The in-process memo key of a clip: its files' (path, size, mtime_ns) and the settings (the disk cache keys the same through `SampleCache.key`)."""
    parts = [_file_key(p) for p in _cache_sources(entry)] + _cache_extra(entry, spec)
    return hashlib.sha1(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def _file_key(path: Path | None) -> list:
    if path is None:
        return [None]
    stat = Path(path).stat()
    return [str(path), stat.st_size, stat.st_mtime_ns]


def _cache_sources(entry: ClipEntry) -> list[Path | None]:
    # a missing optional file (audio, chat) is not a source but an issue stored with the clip: keyed by `_cache_extra`
    return [entry.clip, *(p if p is None or Path(p).exists() else None for p in (entry.audio, entry.chat)), entry.features]


def _cache_extra(entry: ClipEntry, spec: WindowSpec) -> list:
    missing = [str(p) for p in (entry.audio, entry.chat) if p is not None and not Path(p).exists()]
    return [entry.start_time, asdict(spec), FEATURES_VERSION, missing]


def chat_vectors(entry: ClipEntry, issues: IssueLog, duration: float, n_windows: int, spec: WindowSpec) -> np.ndarray | None:
    """Per-window chat vectors (W, 385) of a clip's chat log, or None when the log is unusable.

    A log with bad lines is one issue for the file; a missing log, or one with no usable line, is
    an ``unusable chat log`` issue and the clip goes on without chat (absent, not "no messages").
    Both name the manifest line and id.
    """
    lines = IssueLog(on_error=issues.on_error)
    try:
        messages = read_chat(entry.chat, lines, start_time=entry.start_time, duration=duration)
    except (ChatLogError, FileNotFoundError) as err:
        issues.report(entry.chat, f"unusable chat log: {entry.where}: {err}; the clip is used without chat")
        return None
    for issue in lines.issues:
        issues.report(issue.path, f"{issue.reason} [{entry.where}]")
    return window_chat_vectors(messages_per_window(messages, n_windows, spec.window_s))


def _usable_audio_file(entry: ClipEntry, issues: IssueLog) -> bool:
    """Probe the manifest's separate audio file; an unusable one is an issue and the clip goes on without audio."""
    blocks = iter_audio_file(entry.audio, 8000)
    try:
        next(blocks, None)  # opens, probes and decodes the first frame
    except (MediaError, FileNotFoundError) as err:
        issues.report(entry.audio, f"unusable audio file: {entry.where}: {err}; the clip is used without audio")
        return False
    finally:
        blocks.close()
    return True


def compute_clip_features(entry: ClipEntry, spec: WindowSpec, issues: IssueLog, require_audio: bool = False) -> ClipFeatures:
    """Decode and featurise one clip.

    Raises:
        MediaError / ValueError: unreadable clip, audio or features (the caller reports the issue).
    """
    audio_ok = entry.audio is None or _usable_audio_file(entry, issues)
    media = read_media(entry.clip, spec, audio_path=entry.audio if audio_ok else None, with_audio=audio_ok)
    _check_audio(entry, media.audio is not None, require_audio)
    n_windows = media.frames.shape[0]
    mel = log_mel(media.audio, spec) if media.audio is not None else None
    chat = chat_vectors(entry, issues, media.duration, n_windows, spec) if entry.chat else None
    feats = None
    if entry.features is not None:
        feats = resample_features(read_features(entry.features), media.duration, n_windows, spec.window_s)
    return ClipFeatures(media.frames, mel, chat, feats, media.duration, media.info.fps)


def _check_audio(entry: ClipEntry, has_audio: bool, require_audio: bool) -> None:
    if require_audio and not has_audio:
        raise ValueError(f"clip {entry.clip}: no usable audio: no audio track, and no usable audio file in the manifest (data.options.require_audio is true)")


class ClipMemo:
    """Recently computed clips of this process, by cache key, up to ``max_bytes`` of arrays (oldest evicted)."""

    def __init__(self, max_bytes: int = 256 * 2**20) -> None:
        self.max_bytes = max_bytes
        self.entries: OrderedDict[str, tuple[ClipFeatures, tuple[SampleIssue, ...]]] = OrderedDict()
        self.nbytes = 0

    @staticmethod
    def _size(clip: ClipFeatures) -> int:
        return sum(a.nbytes for a in (clip.frames, clip.mel, clip.chat, clip.features) if a is not None)

    def get(self, key: str) -> tuple[ClipFeatures, tuple[SampleIssue, ...]] | None:
        return self.entries.get(key)

    def put(self, key: str, clip: ClipFeatures, issues: tuple[SampleIssue, ...]) -> None:
        if key in self.entries or self._size(clip) > self.max_bytes:
            return
        self.entries[key] = (clip, issues)
        self.nbytes += self._size(clip)
        while self.nbytes > self.max_bytes:
            _, (old, _) = self.entries.popitem(last=False)
            self.nbytes -= self._size(old)


MEMO = ClipMemo()


def load_clip_features(entry: ClipEntry, spec: WindowSpec, issues: IssueLog, cache: SampleCache | None, require_audio: bool = False) -> ClipFeatures:
    """`compute_clip_features` through the core cache (`mmapps.data.cache`, namespace ``surveillance``) or, without one, the process's `MEMO`.

    The clip's own issues (bad chat lines) are stored with its features and reported to ``issues``
    on every call, cached or not.
    """
    if cache is None:
        key = cache_key(entry, spec)
        found = MEMO.get(key)
        if found is None:
            found = _compute(entry, spec, require_audio)
            MEMO.put(key, *found)
    else:
        stored = cache.get_or_compute(_cache_sources(entry), lambda: _to_entry(*_compute(entry, spec, require_audio)), extra=_cache_extra(entry, spec))
        found = _from_entry(stored.arrays, stored.meta)
    clip, clip_issue_list = found
    _check_audio(entry, clip.mel is not None, require_audio)
    for issue in clip_issue_list:
        issues.report(issue.path, issue.reason)
    return clip


def _compute(entry: ClipEntry, spec: WindowSpec, require_audio: bool) -> tuple[ClipFeatures, tuple[SampleIssue, ...]]:
    clip_issues = IssueLog(on_error="skip")  # collected first, so that they are stored even under --on-error stop
    clip = compute_clip_features(entry, spec, clip_issues, require_audio)
    return clip, tuple(clip_issues.issues)


def _to_entry(clip: ClipFeatures, issues: tuple[SampleIssue, ...]) -> tuple[dict[str, np.ndarray], dict]:
    """A clip as a cache entry: arrays, and plain metadata (duration, fps, the clip's issues)."""
    arrays = {k: v for k, v in (("frames", clip.frames), ("mel", clip.mel), ("chat", clip.chat), ("features", clip.features)) if v is not None}
    return arrays, {"duration": clip.duration, "fps": clip.fps, "issues": [[i.path, i.reason] for i in issues]}


def _from_entry(arrays: dict[str, np.ndarray], meta: dict) -> tuple[ClipFeatures, tuple[SampleIssue, ...]]:
    clip = ClipFeatures(arrays["frames"], arrays.get("mel"), arrays.get("chat"), arrays.get("features"), float(meta["duration"]), float(meta["fps"]))
    return clip, tuple(SampleIssue(p, r) for p, r in meta["issues"])
