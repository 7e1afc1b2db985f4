"""Decision thresholds chosen on validation, decisions at those thresholds, and score distributions.

Scores are what a task's ``postprocess`` reports (``scores``: probabilities; ``values``: regression
outputs). Thresholds: the domain's own, when its metrics report ``threshold/<label>`` on validation
(medical: Youden or a target sensitivity per finding); otherwise, for a multi-label head, Youden's J
per label on the validation scores; a multi-class head decides by arg-max (no threshold).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

QUANTILES = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)
BINS = 20


def record_scores(records: Sequence[Any]) -> np.ndarray:
    """(N, L) scores (or values) of one task's prediction records; (N, T, L) for per-time-step heads."""
    rows = [r.prediction.get("scores", r.prediction.get("values")) for r in records]
    return np.asarray(rows, dtype=np.float64)


def youden_threshold(y: np.ndarray, s: np.ndarray) -> float | None:
    """The score maximising sensitivity + specificity - 1 (predict positive at score >= threshold); None without both classes."""
    keep = np.isfinite(y)
    y, s = y[keep] == 1, s[keep]
    if y.all() or not y.any():
        return None
    best, best_j = None, -np.inf
    for t in np.unique(s):
        pred = s >= t
        j = (pred & y).sum() / y.sum() - (pred & ~y).sum() / (~y).sum()
        if j > best_j:
            best, best_j = float(t), j
    return best


def between_scores(threshold: float, scores: np.ndarray) -> float:
    """Move a threshold that sits on a validation score to the midpoint below it.

    A threshold chosen on validation is one of the validation scores; any rounding difference
    (fp32 vs onnxruntime, int8) would then flip that sample's decision. The midpoint between it and
    the next lower validation score takes the same decision on every validation sample.
    """
    if not np.isfinite(threshold):
        return float(threshold)
    finite = np.unique(scores[np.isfinite(scores)])
    lower = finite[finite < threshold]
    if lower.size:
        return float((threshold + lower.max()) / 2)
    gaps = np.diff(finite)  # the threshold is at (or below) the lowest score: step below it by half the smallest gap
    return float(threshold - (gaps.min() / 2 if gaps.size else 1e-3))


def choose_thresholds(task: Any, records: Sequence[Any], val_metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Label -> threshold for one multi-label task (empty for other heads); see the module docstring."""
    if task.head != "multilabel" or not records:
        return {}
    scores = record_scores(records)
    chosen = {label: val_metrics[f"{prefix}threshold/{label}"] for label in task.labels if isinstance(val_metrics.get(f"{prefix}threshold/{label}"), float)}
    if len(chosen) < len(task.labels):
        targets = np.asarray([r.target if r.target is not None else [np.nan] * len(task.labels) for r in records], dtype=np.float64)
        for j, label in enumerate(task.labels):
            if label not in chosen:
                threshold = youden_threshold(targets[:, j], scores[:, j])
                chosen[label] = 0.5 if threshold is None else threshold
    return {label: between_scores(chosen[label], scores[:, j]) for j, label in enumerate(task.labels)}


def decisions(task: Any, scores: np.ndarray, thresholds: dict[str, float]) -> np.ndarray:
    """Decisions per sample: multi-label (N, L) bool at the thresholds, multi-class arg-max; None for regression."""
    if task.head == "multilabel":
        return scores >= np.asarray([thresholds.get(label, 0.5) for label in task.labels])
    if task.head in ("multiclass", "timestep"):
        return scores.argmax(-1)
    return None


def score_distribution(task: Any, records: Sequence[Any]) -> dict[str, Any]:
    """Per label: quantiles, mean, std and a histogram of the validation scores (the drift reference)."""
    if any(not isinstance(r.prediction, dict) or r.prediction.get("scores", r.prediction.get("values")) is None for r in records):
        return {"n": len(records), "labels": {}}  # no per-label score in this task's predictions (e.g. detections)
    scores = record_scores(records)
    if scores.size == 0:
        return {"n": 0, "labels": {}}
    flat = scores.reshape(-1, scores.shape[-1])
    bounded = task.head != "regression"
    labels = {}
    for j, label in enumerate(task.labels):
        column = flat[:, j][np.isfinite(flat[:, j])]
        low, high = (0.0, 1.0) if bounded else (float(column.min()), float(column.max()) if column.max() > column.min() else float(column.min()) + 1.0)
        counts, edges = np.histogram(column, bins=BINS, range=(low, high))
        labels[label] = {
            "quantiles": {str(q): float(np.quantile(column, q)) for q in QUANTILES},
            "mean": float(column.mean()),
            "std": float(column.std()),
            "histogram": {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
        }
    return {"n": int(flat.shape[0]), "score": "probability" if bounded else "value", "split": "val", "labels": labels}
