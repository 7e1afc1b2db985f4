"""Annotations: the manifest, clip labels (incl. XD-Violence codes), segments, UCF-Crime/XD readers.

Manifest (``manifest.jsonl`` in the data root, one clip per line; paths relative to the root)::

    {"id": "c001", "clip": "clips/c001.mp4", "split": "train",
     "labels": ["fight"] | "label_B1-B2-0" | [],          # [] or ["normal"] = normal clip
     "segments": [[12.0, 15.5, "fight"]],                   # seconds; optional (weak labels only)
     "audio": "mic/c001.wav", "chat": "chat/c001.jsonl",    # optional
     "features": "i3d/c001.npy", "start_time": "2026-05-01T13:00:00"}  # optional

A line that is not valid JSON, a missing clip field, an unknown label or split, an id used by an
earlier line, or a segment whose times are not finite, negative or end <= start is a per-clip
issue (``manifest.jsonl:LINE``), skipped or fatal per ``on_error``. A segment past the clip's end
is checked once the clip is decoded (`check_segments`).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from mmapps_domains.surveillance.windows import Segment

from mmapps.data import IssueLog

XD_CODES = {"A": "normal", "B1": "fighting", "B2": "shooting", "B4": "riot", "B5": "abuse", "B6": "car_accident", "G": "explosion"}
NORMAL = ("normal", "Normal", "Normal_Videos", "A")


@dataclass
class ClipEntry:
    """One manifest line, validated (paths absolute)."""

    clip_id: str
    clip: Path
    split: str | None
    labels: tuple[str, ...]
    segments: tuple[Segment, ...] | None
    audio: Path | None = None
    chat: Path | None = None
    features: Path | None = None
    start_time: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # "manifest.jsonl:LINE": named by every issue of this clip

    @property
    def where(self) -> str:
        """The manifest line and id, for issues: several lines may share one clip file."""
        return f"{self.source} (id {self.clip_id})" if self.source else self.clip_id


def clip_name(name: str) -> str:
    """Strip a video suffix only (XD-Violence names contain dots: ``Bad.Boys.1995__#01-33-51...``)."""
    return re.sub(r"\.(mp4|avi|mkv|webm|mov|npy)$", "", Path(name).name, flags=re.IGNORECASE)


def parse_xd_label(text: str) -> tuple[str, ...]:
    """``"label_B1-B2-0"`` (or a file name containing it) -> ``("fighting", "shooting")``; ``label_A`` -> ().

    Raises:
        ValueError: unknown code.
    """
    match = re.search(r"label_([A-Z0-9-]+)", text)
    if not match:
        raise ValueError(f"XD-Violence label {text!r}: expected '..._label_<codes>' such as label_B1-B2-0")
    names = []
    for code in match.group(1).split("-"):
        if code in ("0", "A"):
            continue
        if code not in XD_CODES:
            raise ValueError(f"XD-Violence label {text!r}: unknown code {code!r}; known {sorted(XD_CODES)}")
        names.append(XD_CODES[code])
    return tuple(names)


def parse_labels(value: Any, classes: Sequence[str]) -> tuple[str, ...]:
    """Clip labels from a list of names or an XD-Violence code string; checks them against ``classes``."""
    if isinstance(value, str):
        labels = parse_xd_label(value) if "label_" in value else (value,)
    elif isinstance(value, (list, tuple)):
        labels = tuple(str(v) for v in value)
    elif value is None:
        labels = ()
    else:
        raise ValueError(f"field 'labels': found {value!r}; expected a list of class names or 'label_B1-B2-0'")
    labels = tuple(lab for lab in labels if lab not in NORMAL)
    unknown = [lab for lab in labels if lab not in classes]
    if unknown:
        raise ValueError(f"field 'labels': unknown class(es) {unknown}; accepted: {list(classes)} or normal")
    return labels


def parse_segments(value: Any, classes: Sequence[str], labels: Sequence[str]) -> tuple[Segment, ...]:
    """``[[start, end, class], ...]`` in seconds (class may be omitted when the clip has one label)."""
    segments = []
    for item in value:
        if not isinstance(item, (list, tuple)) or len(item) not in (2, 3):
            raise ValueError(f"field 'segments': found {item!r}; expected [start, end, class]")
        start, end = _seconds(item[0], item), _seconds(item[1], item)
        if len(item) == 3:
            names = (str(item[2]),)
        elif labels:
            names = tuple(labels)
        else:
            raise ValueError(f"field 'segments': {item!r} has no class and the clip has no label")
        if end <= start:
            raise ValueError(f"field 'segments': end <= start in {item!r}; expected start < end, in seconds from the clip start")
        for name in names:
            if name not in classes:
                raise ValueError(f"field 'segments': unknown class {name!r} in {item!r}; accepted: {list(classes)}")
            segments.append(Segment(start, end, name))
    return tuple(segments)


def _seconds(value: Any, item: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"field 'segments': time {value!r} in {item!r} is not a number of seconds")
    try:
        t = float(value)
    except ValueError:
        raise ValueError(f"field 'segments': time {value!r} in {item!r} is not a number of seconds") from None
    if not math.isfinite(t) or t < 0:
        raise ValueError(f"field 'segments': time {value!r} in {item!r}; expected a finite number of seconds >= 0")
    return t


def _check_start_time(value: Any) -> None:
    from datetime import datetime

    try:
        datetime.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"field 'start_time': found {value!r}; expected an ISO-8601 time such as 2026-05-01T13:00:00") from None


def _frame_numbers(parts: Sequence[str], path: Path, number: int) -> list[int]:
    try:
        return [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"{path}:{number}: expected integer frame numbers, found {' '.join(parts)!r}") from None


def check_segments(entry: ClipEntry, duration: float, fps: float) -> None:
    """Refuse segments that start at or after the clip's end or end well past it.

    A segment may end up to 2 frames + 1 % of the clip past the decoded end (annotation tools and
    frame-count rounding); a later end means the annotation belongs to another or a longer clip.

    Raises:
        ValueError: naming the segment, the clip's decoded duration and the tolerance.
    """
    tolerance = 2.0 / max(fps, 1e-6) + 0.01 * duration
    for seg in entry.segments or ():
        if seg.start >= duration or seg.end > duration + tolerance:
            raise ValueError(
                f"segment outside the clip: {entry.where}: segment [{seg.start:g}, {seg.end:g}, {seg.label!r}] of a clip "
                f"that decodes to {duration:.3f} s (accepted: start < {duration:.3f} s, end <= {duration + tolerance:.3f} s)"
            )


def read_manifest(root: Path, classes: Sequence[str], issues: IssueLog, name: str = "manifest.jsonl") -> list[ClipEntry]:
    """Read and validate ``root/manifest.jsonl``; bad lines are reported to ``issues``."""
    root = Path(root)
    path = root / name
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path}: not found; the data root must hold {name} (see docs/surveillance.md)")
    entries, line_of_id = [], {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        from mmapps.errors import DataError

        raise DataError(f"manifest {path}: not UTF-8 text ({err}); expected one JSON object per line") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"not valid JSON ({err.msg})") from None
            if not isinstance(row, dict) or "clip" not in row:
                raise ValueError("missing field 'clip'")
            labels = parse_labels(row.get("labels", row["clip"] if "label_" in str(row["clip"]) else None), classes)
            segments = parse_segments(row["segments"], classes, labels) if row.get("segments") is not None else None
            for key in ("clip", "audio", "chat", "features"):
                if row.get(key) is not None and not isinstance(row[key], str):
                    raise ValueError(f"field {key!r}: found {row[key]!r}; expected a path relative to the data root")
            if row.get("split") not in (None, "train", "val", "test"):
                raise ValueError(f"field 'split': found {row['split']!r}; expected train, val or test")
            if row.get("start_time") is not None:
                _check_start_time(row["start_time"])
            clip_id = str(row.get("id") or clip_name(row["clip"]))
            if clip_id in line_of_id:
                raise ValueError(f"id {clip_id!r} already used by line {line_of_id[clip_id]}; every clip needs its own id")
            opt = {k: (root / row[k] if row.get(k) else None) for k in ("audio", "chat", "features")}
            entries.append(ClipEntry(
                clip_id=clip_id, clip=root / row["clip"], split=row.get("split"), labels=labels, segments=segments,
                start_time=row.get("start_time"), source=f"{path}:{number}", **opt,
            ))
            line_of_id[clip_id] = number
        except (ValueError, TypeError) as err:
            issues.report(f"{path}:{number}", f"manifest line: {err}")
    return entries


def read_ucf_crime_annotations(path: Path, fps: float = 30.0) -> dict[str, tuple[str, tuple[Segment, ...]]]:
    """UCF-Crime ``Temporal_Anomaly_Annotation.txt``: ``name class s1 e1 s2 e2`` (frames, -1 = none).

    Returns:
        clip name (without suffix) -> (class or "normal", segments in seconds).
    """
    out = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 6:
            raise ValueError(f"{path}:{number}: expected 'name class s1 e1 s2 e2', found {line!r}")
        name, cls = clip_name(parts[0]), parts[1]
        label = "normal" if cls in NORMAL else cls.lower()
        frames = _frame_numbers(parts[2:], path, number)
        segs = []
        for s, e in ((frames[0], frames[1]), (frames[2], frames[3])):
            if s >= 0 and e >= 0:
                if e < s:
                    raise ValueError(f"{path}:{number}: segment end {e} < start {s}")
                segs.append(Segment(s / fps, e / fps, label))
        out[name] = (label, tuple(segs))
    return out


def read_xd_violence_annotations(path: Path, fps: float = 24.0) -> dict[str, tuple[tuple[str, ...], tuple[Segment, ...]]]:
    """XD-Violence test ``annotations.txt``: ``name s1 e1 s2 e2 ...`` (frame pairs); classes from the name.

    Returns:
        clip name -> (clip labels, segments in seconds, each carrying every label of the clip).
    """
    out = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        name, numbers = parts[0], parts[1:]
        if len(numbers) % 2:
            raise ValueError(f"{path}:{number}: expected pairs of start/end frames after the name, found {len(numbers)} numbers")
        labels = parse_xd_label(name)
        segs = []
        frames = _frame_numbers(numbers, path, number)
        for s, e in zip(frames[::2], frames[1::2]):
            if e < s or s < 0:
                raise ValueError(f"{path}:{number}: segment [{s}, {e}]: expected 0 <= start <= end (frames)")
            segs.extend(Segment(s / fps, e / fps, lab) for lab in labels)
        out[clip_name(name)] = (labels, tuple(segs))
    return out


def read_features(path: Path) -> np.ndarray:
    """Pre-extracted clip features (I3D / VGGish / CLIP) ``.npy``: (T, F), or (T, crops, F) averaged over crops."""
    try:
        feats = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"features {path}: cannot be read as .npy ({err})") from None
    if feats.ndim == 3:
        feats = feats.mean(1)
    if feats.ndim != 2 or feats.shape[0] == 0:
        raise ValueError(f"features {path}: shape {feats.shape}; expected (T, F) or (T, crops, F)")
    return feats.astype(np.float32)
