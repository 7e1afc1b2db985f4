"""Percentile bootstrap confidence intervals for any scalar statistic, by sample or by group."""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Sequence

import numpy as np


class ConfidenceInterval(NamedTuple):
    """A point estimate with its percentile-bootstrap interval.

    Attributes:
        estimate: the statistic on the full data.
        low, high: interval bounds at `level` (nan when no resample was usable).
        level: e.g. 0.95.
        n_resamples: resamples drawn.
        n_degenerate: resamples on which the statistic was undefined (e.g. one class only), excluded.
    """

    estimate: float
    low: float
    high: float
    level: float
    n_resamples: int
    n_degenerate: int


def bootstrap_ci(
    statistic: Callable[..., float],
    arrays: Sequence[np.ndarray],
    groups: np.ndarray | None = None,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> ConfidenceInterval:
    """Bootstrap a statistic of aligned arrays, resampling rows or whole groups with replacement.

    Args:
        statistic: ``statistic(*arrays) -> float``; may raise ValueError or return nan when
            undefined on a resample (counted as degenerate).
        arrays: arrays sharing their first axis (e.g. ``y_true, y_score``).
        groups: optional group key per row (patient id): a resample draws groups, keeping each
            group's rows together, as clustered data needs.
        n_resamples: number of resamples (1000 by default).
        level: two-sided confidence level.
        seed: seeds the resampling, so intervals are reproducible.

    Returns:
        A `ConfidenceInterval`.
    """
    arrays = [np.asarray(a) for a in arrays]
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError(f"bootstrap_ci: arrays differ in length: {[len(a) for a in arrays]}")
    estimate = _safe(statistic, arrays)
    rng = np.random.default_rng(seed)
    if groups is None:
        units = [np.array([i]) for i in range(n)]
    else:
        _, inverse = np.unique(np.asarray(groups), return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        boundaries = np.flatnonzero(np.diff(inverse[order])) + 1
        units = np.split(order, boundaries)
    values = []
    for _ in range(n_resamples):
        picked = rng.integers(0, len(units), size=len(units))
        rows = np.concatenate([units[i] for i in picked])
        value = _safe(statistic, [a[rows] for a in arrays])
        if not math.isnan(value):
            values.append(value)
    degenerate = n_resamples - len(values)
    if not values:
        return ConfidenceInterval(estimate, math.nan, math.nan, level, n_resamples, degenerate)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(np.asarray(values), [alpha, 1.0 - alpha])
    return ConfidenceInterval(estimate, float(low), float(high), level, n_resamples, degenerate)


def _safe(statistic: Callable[..., float], arrays: Sequence[np.ndarray]) -> float:
    try:
        value = float(statistic(*arrays))
    except (ValueError, ZeroDivisionError, FloatingPointError):
        return math.nan
    return value
