"""Prediction file: one JSON line per clip with per-window scores by class and the alerts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mmapps_domains.surveillance.events import scores_to_segments


def clip_alerts(clip: str, scores: np.ndarray, classes: list[str], window_s: float, threshold: float, merge_gap: int = 1) -> list[dict]:
    """Alerts (start, end, class, score) of one clip: per class, the segment rule of `events`."""
    alerts = []
    for c_i, name in enumerate(classes):
        for seg in scores_to_segments(clip, scores[:, c_i], window_s, threshold, merge_gap):
            alerts.append({"start": round(seg.start, 3), "end": round(seg.end, 3), "class": name, "score": round(seg.score, 4)})
    return sorted(alerts, key=lambda a: (a["start"], a["class"]))


def write_predictions(records: dict[str, list[Any]], out_dir: Path, threshold: float = 0.5) -> Path:
    """Write ``predictions.jsonl``: ``{"clip", "window_s", "window_starts", "scores": {class: [...]}, "alerts": [...]}``."""
    path = Path(out_dir) / "predictions.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for r in records.get("events", []):
            classes = list(r.meta.get("classes") or [])
            scores = np.asarray(r.prediction["scores"], np.float64)
            row = {
                "clip": r.sample_id, "window_s": r.prediction["window_s"], "window_starts": r.prediction["window_starts"],
                "scores": {c: scores[:, i].round(6).tolist() for i, c in enumerate(classes)},
                "alerts": clip_alerts(r.sample_id, scores, classes, r.prediction["window_s"], threshold),
            }
            handle.write(json.dumps(row) + "\n")
    return path
