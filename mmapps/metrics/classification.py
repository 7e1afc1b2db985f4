"""Ranking and classification metrics in NumPy, checked in tests against scikit-learn.

Each function takes ``y_true`` (0/1 or class indices) and scores, ignores NaN targets, and raises
ValueError when undefined (one class only), which `bootstrap_ci` counts as a degenerate resample.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from mmapps.registry import METRICS


def _valid(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=float).ravel()
    y_score = np.asarray(y_score, dtype=float).ravel()
    keep = ~np.isnan(y_true)
    return y_true[keep], y_score[keep]


@METRICS.register("roc_auc")
def roc_auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Area under the ROC curve via the rank statistic (ties get half credit)."""
    y, s = _valid(y_true, y_score)
    n_pos = int((y == 1).sum())
    n_neg = int((y == 0).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("roc_auc: needs both positive and negative targets")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_scores = s[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(average, counts)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


class Curve(NamedTuple):
    x: np.ndarray
    y: np.ndarray
    thresholds: np.ndarray


def _counts_at_thresholds(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """True positives and predicted positives at each distinct score, highest first; plus the positives."""
    y, s = _valid(y_true, y_score)
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    distinct = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    return np.cumsum(y)[distinct], distinct + 1.0, s[distinct], float(y.sum())


def roc_curve(y_true: np.ndarray, y_score: np.ndarray) -> Curve:
    """ROC curve points (fpr, tpr) at every distinct score threshold, starting at (0, 0)."""
    tps, predicted, thresholds, _ = _counts_at_thresholds(y_true, y_score)
    fps = predicted - tps
    tpr = np.r_[0.0, tps / max(tps[-1], 1)]
    fpr = np.r_[0.0, fps / max(fps[-1], 1)]
    return Curve(fpr, tpr, np.r_[np.inf, thresholds])


def precision_recall_curve(y_true: np.ndarray, y_score: np.ndarray) -> Curve:
    """Precision (y) against recall (x) at every distinct threshold, highest threshold first."""
    tps, predicted, thresholds, positives = _counts_at_thresholds(y_true, y_score)
    return Curve(tps / max(positives, 1), tps / predicted, thresholds)


@METRICS.register("average_precision")
def average_precision(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """AP as scikit-learn defines it: sum over thresholds of (R_n - R_{n-1}) * P_n (no interpolation)."""
    y, _ = _valid(y_true, y_score)
    if (y == 1).sum() == 0:
        raise ValueError("average_precision: needs at least one positive target")
    curve = precision_recall_curve(y_true, y_score)
    recall_steps = np.diff(np.r_[0.0, curve.x])
    return float(np.sum(recall_steps * curve.y))


@METRICS.register("accuracy")
def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y_true = np.asarray(y_true).ravel()
    y_pred = np.asarray(y_pred).ravel()
    if len(y_true) == 0:
        raise ValueError("accuracy: no samples")
    return float((y_true == y_pred).mean())


@METRICS.register("macro_f1")
def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int | None = None) -> float:
    """Unweighted mean of per-class F1 over the classes present in targets or predictions."""
    y_true = np.asarray(y_true).ravel()
    y_pred = np.asarray(y_pred).ravel()
    classes = np.arange(num_classes) if num_classes else np.union1d(y_true, y_pred)
    scores = []
    for c in classes:
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


@METRICS.register("expected_calibration_error")
def expected_calibration_error(y_true: np.ndarray, y_prob: np.ndarray, n_bins: int = 15) -> float:
    """ECE with equal-width bins on [0, 1]: sum_b |B|/n * |mean(y in B) - mean(p in B)|."""
    y, p = _valid(y_true, y_prob)
    if len(y) == 0:
        raise ValueError("expected_calibration_error: no samples")
    bins = np.clip(np.floor(p * n_bins).astype(int), 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        in_bin = bins == b
        if in_bin.any():
            ece += in_bin.mean() * abs(y[in_bin].mean() - p[in_bin].mean())
    return float(ece)
