"""Alarm metrics: the threshold for 90 % event recall (validation), false alarms per hour, delay, misses.

An *event* is a union of overlapping ground-truth segments of any class; an *alert* is a segment
of the anomaly score (max over classes) formed by `events.scores_to_segments`. An event is caught
when a window inside it reaches the threshold. Detection delay = end of the first above-threshold window inside the
event (the moment a causal system knows) minus the event start, floored at 0. A false alarm is an
alert overlapping no event; false alarms per hour divide their count by the total clip hours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from mmapps_domains.surveillance.events import TimedSegment, merge_events, scores_to_segments


@dataclass
class ClipScores:
    """One clip's anomaly score per window and its true events."""

    clip: str
    scores: np.ndarray  # (W,)
    window_s: float
    duration: float
    events: list[TimedSegment]


def _overlaps(a: TimedSegment, b: TimedSegment) -> bool:
    return a.clip == b.clip and min(a.end, b.end) > max(a.start, b.start)


def first_alert_window(c: ClipScores, event: TimedSegment, threshold: float) -> int | None:
    """Index of the first window overlapping ``event`` whose score reaches ``threshold``, else None."""
    for w in range(len(c.scores)):
        if c.scores[w] >= threshold and (w + 1) * c.window_s > event.start and w * c.window_s < event.end:
            return w
    return None


def event_recall(clips: Sequence[ClipScores], threshold: float) -> float:
    """Share of events with an above-threshold window inside them; NaN without events."""
    hits = [first_alert_window(c, ev, threshold) is not None for c in clips for ev in merge_events(c.events)]
    return float(np.mean(hits)) if hits else float("nan")


def threshold_for_recall(clips: Sequence[ClipScores], target: float = 0.9) -> float:
    """Highest threshold whose event recall reaches ``target``; NaN without events.

    An event is caught at threshold t iff the max score of its windows is >= t, so the answer is
    the ceil(target * n)-th largest of those per-event maxima.
    """
    best = []
    for c in clips:
        for ev in merge_events(c.events):
            inside = [c.scores[w] for w in range(len(c.scores)) if (w + 1) * c.window_s > ev.start and w * c.window_s < ev.end]
            best.append(max(inside) if inside else -np.inf)
    if not best:
        return float("nan")
    k = int(np.ceil(target * len(best) - 1e-9))
    return float(sorted(best, reverse=True)[max(k, 1) - 1])


def alarm_metrics(clips: Sequence[ClipScores], threshold: float, merge_gap: int = 1) -> dict[str, float]:
    """False alarms per hour, event recall, median detection delay (s) and miss rate at ``threshold``."""
    false_alarms, delays, missed, total, hours = 0, [], 0, 0, 0.0
    for c in clips:
        hours += c.duration / 3600.0
        alerts = scores_to_segments(c.clip, c.scores, c.window_s, threshold, merge_gap)
        events = merge_events(c.events)
        false_alarms += sum(not any(_overlaps(a, ev) for ev in events) for a in alerts)
        for ev in events:
            total += 1
            first = first_alert_window(c, ev, threshold)
            if first is not None:
                delays.append(max(0.0, (first + 1) * c.window_s - ev.start))
            else:
                missed += 1
    return {
        "alarm/threshold": float(threshold),
        "alarm/false_alarms_per_hour": false_alarms / hours if hours else float("nan"),
        "alarm/event_recall": (total - missed) / total if total else float("nan"),
        "alarm/median_delay_s": float(np.median(delays)) if delays else float("nan"),
        "alarm/miss_rate": missed / total if total else float("nan"),
    }
