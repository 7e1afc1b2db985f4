"""Datasets of `mmapps.data.Sample`, one per clip, and ``build_datasets(cfg)``.

Sample layout (W windows of ``window_s`` seconds, see `windows`):

- inputs: ``video`` float (W, F, C, H, W') in [0, 1] (C doubled by the motion channel); ``audio`` float (W, n_mels, mel_frames) log-mel;
  ``chat`` float (W, 385) per-window MiniLM message vector; ``features`` float (W, F) pre-extracted
  features. All "padded" over windows; an absent modality is an empty (0, ...) tensor, which
  collates to ``present=False``.
- targets: ``events`` float (W, C) per-window labels (NaN = unknown: weak regime, no segments);
  ``clip`` float (C,) clip labels.
- meta: fps (native), window_s, window_starts, duration, segments [[start, end, class]], clip_labels.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mmapps_domains.surveillance.annotations import (
    ClipEntry,
    check_segments,
    read_manifest,
)
from mmapps_domains.surveillance.chat import SKIPPED_LINES, skipped_line_count
from mmapps_domains.surveillance.errors import MediaError
from mmapps_domains.surveillance.options import SurveillanceDataOptions, data_options
from mmapps_domains.surveillance.preprocess import (
    ClipFeatures,
    load_clip_features,
    open_clip_cache,
)
from mmapps_domains.surveillance.text_embed import EMBED_DIM
from mmapps_domains.surveillance.windows import window_labels
from torch.utils.data import Dataset

from mmapps.data import DatasetSplits, IssueLog, Sample


def absent_or(array: np.ndarray | None, element_shape: tuple[int, ...]) -> torch.Tensor:
    """The array as float tensor, or an empty ``(0, *element_shape)`` one for an absent modality.

    The core collate needs one real example per modality in a batch; a zero-length padded tensor
    is such an example and still collates to ``present=False`` (its window mask is all False).
    """
    if array is None:
        return torch.zeros((0,) + tuple(element_shape))
    return torch.from_numpy(np.asarray(array, np.float32))


def video_tensor(frames: np.ndarray, motion_channel: bool) -> torch.Tensor:
    """uint8 (W, F, C, H, W') -> float (W, F, C[+C], H, W') in [0, 1], with the motion channel(s).

    Motion = |frame f - frame f-1| inside the window (0 for the first frame), so each window is
    still computed from its own frames only (streaming gives the same tensors).
    """
    video = torch.from_numpy(np.ascontiguousarray(frames)).float() / 255.0
    if not motion_channel:
        return video
    motion = torch.zeros_like(video)
    motion[:, 1:] = (video[:, 1:] - video[:, :-1]).abs()
    return torch.cat([video, motion], dim=2)


def clip_sample(entry: ClipEntry, clip: ClipFeatures, opts: SurveillanceDataOptions, split: str) -> Sample:
    """Build the `Sample` of one preprocessed clip (see the module docstring for the layout)."""
    n_windows, classes = clip.frames.shape[0], opts.classes
    if entry.segments is None or (opts.regime == "weak" and split == "train"):
        events = np.full((n_windows, len(classes)), np.nan, np.float32)
    else:
        events = window_labels(entry.segments, n_windows, opts.window_s, classes, opts.label_overlap)
    labels = set(entry.labels) | {s.label for s in entry.segments or ()}
    clip_target = np.array([float(c in labels) for c in classes], np.float32)
    inputs = {
        "video": video_tensor(clip.frames, opts.motion_channel),
        "audio": absent_or(clip.mel, (opts.n_mels, opts.mel_frames)),
        "chat": absent_or(clip.chat, (EMBED_DIM + 1,)),
        "features": absent_or(clip.features, (opts.features_dim or 1,)),
    }
    meta = {
        "fps": clip.fps, "window_s": opts.window_s, "duration": clip.duration,
        "window_starts": [round(w * opts.window_s, 6) for w in range(n_windows)],
        "segments": [[s.start, s.end, s.label] for s in entry.segments or ()],
        "clip_labels": sorted(labels), "split": split, "classes": list(classes),
    }
    targets = {"events": torch.from_numpy(events), "clip": torch.from_numpy(clip_target)}
    return Sample(sample_id=entry.clip_id, group_id=entry.clip_id, inputs=inputs, targets=targets, meta=meta)


class SurveillanceDataset(Dataset):
    """Clips of one split; features kept in memory, or read from the cache when ``cache_dir`` is set."""

    def __init__(self, entries: list[ClipEntry], clips: list[ClipFeatures | None], opts: SurveillanceDataOptions, split: str, cache_dir: Any | None) -> None:
        self.entries, self.clips, self.opts, self.split, self.cache_dir = entries, clips, opts, split, cache_dir

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> Sample:
        entry = self.entries[index]
        clip = self.clips[index] or load_clip_features(entry, self.opts.window_spec(), IssueLog(), self.cache_dir, self.opts.require_audio)
        return clip_sample(entry, clip, self.opts, self.split)


def assign_split(entry: ClipEntry, opts: SurveillanceDataOptions) -> str:
    """The manifest's split, else a stable hash of the clip id against the configured fractions."""
    if entry.split:
        if entry.split not in ("train", "val", "test"):
            raise ValueError(f"field 'split': found {entry.split!r}; expected train, val or test")
        return entry.split
    u = int(hashlib.sha1(entry.clip_id.encode()).hexdigest()[:8], 16) / 2**32
    return "test" if u < opts.test_fraction else ("val" if u < opts.test_fraction + opts.val_fraction else "train")


SKIP_KINDS = {  # issue reason prefix -> what the summary counts (files and manifest lines apart from chat lines)
    "manifest line": "skipped/manifest lines", "unusable clip": "skipped/clips", "segment outside the clip": "skipped/clips",
    "unusable chat log": "skipped/chat logs (clip used without chat)", "unusable audio file": "skipped/audio files (clip used without audio)",
    SKIPPED_LINES: "skipped/chat logs with bad lines",
}


def skip_counts(issues: IssueLog) -> dict[str, int]:
    """Skipped inputs by kind, per file or manifest line, and the bad chat lines apart (they are lines, not inputs)."""
    out: dict[str, int] = {}
    for issue in issues.issues:
        kind = SKIP_KINDS.get(issue.reason.split(":")[0], "skipped/other")
        out[kind] = out.get(kind, 0) + 1
        if lines := skipped_line_count(issue.reason):
            out["skipped/chat lines"] = out.get("skipped/chat lines", 0) + lines
    return out


def build_datasets(cfg: Any, splits: tuple[str, ...] = ("train", "val", "test")) -> DatasetSplits:
    """Read the manifest under ``cfg.data.root``, preprocess (and cache) every clip, split them.

    `splits`: the splits to build (the others stay empty, their clips unread): export needs val and train only.

    Unusable manifest lines, clips, segments, chat logs and audio files are reported to the
    `IssueLog` (skip or stop per ``cfg.data.on_error``), each naming its manifest line and id, and
    counted in the run summary; ``info`` counts them by kind (`skip_counts`), bad chat lines apart.
    """
    opts = data_options(cfg.data.options)
    root = Path(cfg.data.root)
    issues = IssueLog(on_error=cfg.data.on_error)
    entries = read_manifest(root, opts.classes, issues, opts.manifest)
    spec, cache_dir = opts.window_spec(), open_clip_cache(cfg)  # None when cache.enabled=false: clips stay in memory
    by_split: dict[str, tuple[list, list]] = {s: ([], []) for s in ("train", "val", "test")}
    for entry in entries:
        try:
            split = assign_split(entry, opts)
            if split not in splits:
                continue
            clip = load_clip_features(entry, spec, issues, cache_dir, opts.require_audio)
        except (MediaError, ValueError, FileNotFoundError) as err:
            issues.report(entry.source or entry.clip, f"unusable clip: id {entry.clip_id}: {err}")
            continue
        try:
            check_segments(entry, clip.duration, clip.fps)
        except ValueError as err:
            issues.report(entry.source or entry.clip, str(err))
            continue
        by_split[split][0].append(entry)
        by_split[split][1].append(None if cache_dir is not None else clip)
    if not any(by_split[s][0] for s in by_split):
        from mmapps.errors import DataError

        raise DataError(f"surveillance: no usable clip under {root} ({issues.summary()})")
    datasets = {s: SurveillanceDataset(e, c, opts, s, cache_dir) for s, (e, c) in by_split.items()}
    info = {"root": str(root), "classes": opts.classes, "regime": opts.regime, **{f"clips/{s}": len(d) for s, d in datasets.items()}, **skip_counts(issues),
            "cache": cache_dir.describe() if cache_dir is not None else "off (cache.enabled=false; recent clips kept in memory)"}
    split_of_group = {e.clip_id: s for s, (es, _) in by_split.items() for e in es}
    return DatasetSplits(datasets["train"], datasets["val"], datasets["test"], issues, split_of_group, info)
