"""Time windows shared by every modality: explicit offsets, labels from segments.

Window ``w`` of a clip covers ``[w * window_s, (w + 1) * window_s)`` seconds from the clip start;
the last window may be partial. Every modality (sampled frames, audio, chat messages, features)
is cut on these same offsets so that token ``w`` of each encoder describes the same second.

Window labels: a window is positive for class ``c`` when a ``c`` segment covers at least
``min_overlap`` of the window, or when the whole segment lies inside the window (short events).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class WindowSpec:
    """How clips are cut and sampled.

    Args:
        window_s: window length in seconds.
        frames_per_window: frames sampled per window (sampling rate = frames_per_window / window_s).
        height, width: sampled frame size in pixels.
        channels: 1 (gray) or 3 (RGB).
        sample_rate: audio rate after resampling (Hz).
        n_mels: mel bands of the per-window log-mel.
        mel_frames: log-mel frames per window.
    """

    window_s: float = 1.0
    frames_per_window: int = 4
    height: int = 32
    width: int = 32
    channels: int = 1
    sample_rate: int = 16000
    n_mels: int = 32
    mel_frames: int = 16

    @property
    def samples_per_window(self) -> int:
        return int(round(self.window_s * self.sample_rate))

    @property
    def sampling_fps(self) -> float:
        return self.frames_per_window / self.window_s

    def num_windows(self, duration: float) -> int:
        """Number of windows covering ``duration`` seconds (the last one may be partial)."""
        return max(1, math.ceil(duration / self.window_s - 1e-6))

    def window_starts(self, duration: float) -> np.ndarray:
        """Start time (s) of every window of a clip of ``duration`` seconds."""
        return np.arange(self.num_windows(duration), dtype=np.float64) * self.window_s

    def frame_times(self, window: int) -> np.ndarray:
        """Times (s) at which window ``window`` samples its frames (centres of equal slots)."""
        return np.array([self.frame_time(window, slot) for slot in range(self.frames_per_window)])

    def frame_time(self, window: int, slot: int) -> float:
        """Time (s) of one sampling slot (the same numbers as `frame_times`, without an array per call)."""
        return window * self.window_s + (slot + 0.5) * (self.window_s / self.frames_per_window)


@dataclass(frozen=True)
class Segment:
    """A labelled time span [start, end) in seconds from the clip start."""

    start: float
    end: float
    label: str


def window_labels(
    segments: Sequence[Segment], n_windows: int, window_s: float, classes: Sequence[str], min_overlap: float = 0.3
) -> np.ndarray:
    """Per-window multi-hot labels from temporal segments.

    Args:
        segments: the clip's labelled segments (labels outside ``classes`` are ignored).
        n_windows: number of windows of the clip.
        window_s: window length in seconds.
        classes: class names in output order.
        min_overlap: fraction of a window a segment must cover to make it positive.

    Returns:
        float32 array (n_windows, len(classes)) of 0/1.
    """
    labels = np.zeros((n_windows, len(classes)), dtype=np.float32)
    class_to_index = {c: i for i, c in enumerate(classes)}
    for seg in segments:
        if seg.label not in class_to_index:
            continue
        for w in range(max(0, int(seg.start // window_s)), min(n_windows, math.ceil(seg.end / window_s))):
            lo, hi = w * window_s, (w + 1) * window_s
            overlap = max(0.0, min(hi, seg.end) - max(lo, seg.start))
            inside = seg.start >= lo and seg.end <= hi
            if overlap >= min_overlap * window_s or (inside and overlap > 0):
                labels[w, class_to_index[seg.label]] = 1.0
    return labels


def resample_features(features: np.ndarray, duration: float, n_windows: int, window_s: float) -> np.ndarray:
    """Average pre-extracted features (T, F), evenly spread over ``duration`` s, into windows.

    I3D / VGGish features come at their own rate (e.g. one per 16 frames); each window takes the
    mean of the feature steps whose centre falls inside it, or the nearest step when none does.

    Returns:
        float32 array (n_windows, F).
    """
    steps = features.shape[0]
    centres = (np.arange(steps) + 0.5) * duration / max(steps, 1)  # (T,)
    out = np.zeros((n_windows, features.shape[1]), dtype=np.float32)
    for w in range(n_windows):
        inside = (centres >= w * window_s) & (centres < (w + 1) * window_s)
        if inside.any():
            out[w] = features[inside].mean(0)
        else:
            out[w] = features[int(np.argmin(np.abs(centres - (w + 0.5) * window_s)))]
    return out
