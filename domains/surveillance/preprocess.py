"""Per-clip preprocessing shared by datasets and ``watch``: windows of frames, log-mels, chat vectors.

Results are cached (``cfg.data.cache_dir/surveillance/<clip>-<key>.npz``) so that epochs never decode
video again; the key hashes the input files (path, size, mtime) and the window settings. Without a
cache folder, the results of recent clips are kept in memory for the process (`ClipMemo`), so
that a benchmark's many runs over the same clips decode them once. Either way the issues found
while reading a clip (bad chat lines) are stored with its features and reported again on every
read, so a run's summary counts them whether or not the clip came from a cache.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mmapps.data import IssueLog
from mmapps.data.issues import SampleIssue
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
    parts = [_file_key(p) for p in (entry.clip, entry.audio, entry.chat, entry.features)] + [entry.start_time, asdict(spec), 4]
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
    _check_audio(entry, media.audio is not None, require_audio)
    n_windows = media.frames.shape[0]
    mel = log_mel(media.audio, spec) if media.audio is not None else None
    chat = chat_vectors(entry.chat, issues, entry.start_time, media.duration, n_windows, spec) if entry.chat else None
    feats = None
    if entry.features is not None:
        feats = resample_features(read_features(entry.features), media.duration, n_windows, spec.window_s)
    return ClipFeatures(media.frames, mel, chat, feats, media.duration, media.info.fps)


def _check_audio(entry: ClipEntry, has_audio: bool, require_audio: bool) -> None:
    if require_audio and not has_audio:
        raise ValueError(f"clip {entry.clip}: has no audio track and the manifest gives no audio file (data.options.require_audio is true)")


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


def load_clip_features(entry: ClipEntry, spec: WindowSpec, issues: IssueLog, cache_dir: Path | None, require_audio: bool = False) -> ClipFeatures:
    """`compute_clip_features` through the on-disk cache (when ``cache_dir`` is set) or the process's `MEMO`.

    The clip's own issues (bad chat lines) are reported to ``issues`` on every call, cached or not.
    """
    key = cache_key(entry, spec)
    path = Path(cache_dir) / "surveillance" / f"{entry.clip_id}-{key}.npz" if cache_dir is not None else None
    found = _read_cached(path) if path is not None else MEMO.get(key)
    if found is None:
        clip_issues = IssueLog(on_error="skip")  # collected first, so that they are stored even under --on-error stop
        clip = compute_clip_features(entry, spec, clip_issues, require_audio)
        found = (clip, tuple(clip_issues.issues))
        if path is not None:
            _write_cached(path, *found)
        else:
            MEMO.put(key, *found)
    clip, clip_issue_list = found
    _check_audio(entry, clip.mel is not None, require_audio)
    for issue in clip_issue_list:
        issues.report(issue.path, issue.reason)
    return clip


def _read_cached(path: Path) -> tuple[ClipFeatures, tuple[SampleIssue, ...]] | None:
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        get = lambda k: data[k] if k in data.files else None  # noqa: E731
        clip = ClipFeatures(data["frames"], get("mel"), get("chat"), get("features"), float(data["duration"]), float(data["fps"]))
        issues = tuple(SampleIssue(p, r) for p, r in json.loads(str(data["issues"])))
    return clip, issues


def _write_cached(path: Path, clip: ClipFeatures, issues: tuple[SampleIssue, ...]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: v for k, v in (("mel", clip.mel), ("chat", clip.chat), ("features", clip.features)) if v is not None}
    issues_json = np.array(json.dumps([[i.path, i.reason] for i in issues]))  # a 0-d string array: no pickle needed
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, frames=clip.frames, duration=clip.duration, fps=clip.fps, issues=issues_json, **arrays)
    tmp.replace(path)
