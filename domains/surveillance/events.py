"""From window scores to event segments, and THUMOS-style detection AP at a temporal IoU.

Segment rule (documented in docs/surveillance.md): windows whose score is >= ``threshold`` are
kept; kept runs separated by at most ``merge_gap`` windows below the threshold are merged; a
segment spans [first window start, last window end) and scores the max of its window scores.

Matching (THUMOS'14 / ActivityNet evaluation code): detections of a class, all clips together,
sorted by score; each is a true positive when its best-tIoU ground-truth segment of the same
clip and class not matched yet reaches the tIoU threshold (trying ground truths in decreasing
tIoU order), else a false positive. AP is
the area under the interpolated (monotone) precision-recall curve.

Ties are broken deterministically, so AP never depends on the order of the input: detections
by (score descending, clip id, start, end), ground truths of equal tIoU by (start, end). The
reference evaluators use a stable sort on the input order (ActivityNet's own order depends on
how its dataframe was built), which moved AP by up to 0.5 on tied scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class TimedSegment:
    """A [start, end) segment of one clip, with a score (detections) or 1.0 (ground truth)."""

    clip: str
    start: float
    end: float
    score: float = 1.0


def scores_to_segments(clip: str, scores: Sequence[float], window_s: float, threshold: float, merge_gap: int = 1) -> list[TimedSegment]:
    """Threshold and merge per-window scores of one class into segments (see the module rule)."""
    s = np.asarray(scores, dtype=np.float64)
    above = np.flatnonzero(s >= threshold)
    segments: list[TimedSegment] = []
    if above.size == 0:
        return segments
    start = prev = above[0]
    for w in above[1:]:
        if w - prev - 1 > merge_gap:
            segments.append(TimedSegment(clip, start * window_s, (prev + 1) * window_s, float(s[start : prev + 1].max())))
            start = w
        prev = w
    segments.append(TimedSegment(clip, start * window_s, (prev + 1) * window_s, float(s[start : prev + 1].max())))
    return segments


def tiou(a: TimedSegment, b: TimedSegment) -> float:
    """Temporal intersection over union of two segments."""
    inter = max(0.0, min(a.end, b.end) - max(a.start, b.start))
    union = (a.end - a.start) + (b.end - b.start) - inter
    return inter / union if union > 0 else 0.0


def interpolated_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """Area under the monotone envelope of a PR curve (VOC / ActivityNet ``interpolated_prec_rec``)."""
    mprec = np.concatenate([[0.0], precision, [0.0]])
    mrec = np.concatenate([[0.0], recall, [1.0]])
    for i in range(len(mprec) - 2, -1, -1):
        mprec[i] = max(mprec[i], mprec[i + 1])
    idx = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))


def detection_ap(detections: Sequence[TimedSegment], ground_truth: Sequence[TimedSegment], tiou_threshold: float) -> float:
    """THUMOS-style AP of one class; NaN when there is no ground-truth segment.

    Args:
        detections: scored segments of all clips.
        ground_truth: true segments of all clips.
        tiou_threshold: minimum tIoU for a match (0.1, 0.3, 0.5...).
    """
    if not ground_truth:
        return float("nan")
    if not detections:
        return 0.0
    order = sorted(detections, key=lambda d: (-d.score, d.clip, d.start, d.end))
    matched = [False] * len(ground_truth)
    tp = np.zeros(len(order))
    for i, det in enumerate(order):
        candidates = sorted(((-tiou(det, gt), gt.start, gt.end, j) for j, gt in enumerate(ground_truth) if gt.clip == det.clip))
        candidates = [(-negative, j) for negative, _, _, j in candidates]
        for overlap, j in candidates:  # best unmatched ground truth above the threshold
            if overlap < tiou_threshold:
                break
            if not matched[j]:
                matched[j] = True
                tp[i] = 1.0
                break
    tp_cum = np.cumsum(tp)
    precision = tp_cum / np.arange(1, len(order) + 1)
    recall = tp_cum / len(ground_truth)
    return interpolated_ap(precision, recall)


def merge_events(segments: Sequence[TimedSegment]) -> list[TimedSegment]:
    """Union of overlapping segments of a clip (events of any class, for alarm metrics)."""
    out: list[TimedSegment] = []
    for seg in sorted(segments, key=lambda s: (s.clip, s.start)):
        if out and out[-1].clip == seg.clip and seg.start <= out[-1].end:
            out[-1] = TimedSegment(seg.clip, out[-1].start, max(out[-1].end, seg.end), out[-1].score)
        else:
            out.append(seg)
    return out
