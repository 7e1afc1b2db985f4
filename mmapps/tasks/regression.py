"""Regression metrics: MAE, RMSE and R² per output and averaged, with group-bootstrap CIs."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from mmapps.errors import PredictionError
from mmapps.tasks.intervals import put_metric, task_label_names


def _as_row(value: Any) -> list[float]:
    values = value if isinstance(value, (list, tuple)) else [value]
    return [math.nan if v is None else float(v) for v in values]


def regression_arrays(records: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Records -> targets ``(N, K)`` (NaN = unknown), predictions ``(N, K)``, groups ``(N,)``."""
    if not records:
        return np.zeros((0, 0)), np.zeros((0, 0)), np.zeros(0, dtype=str)
    y = [_as_row(r.target) for r in records]
    p = [_as_row(r.prediction["values"]) for r in records]
    width = len(p[0])
    for r, target, pred in zip(records, y, p):
        if len(target) != width or len(pred) != width:
            raise PredictionError(
                f"task {r.task!r}, sample {r.sample_id}: regression metrics need {width} values and {width} targets per sample; "
                f"found {len(pred)} values and {len(target)} targets (NaN marks an unknown target)"
            )
    return np.array(y), np.array(p), np.array([str(r.group_id) for r in records])


def _per_output(y: np.ndarray, p: np.ndarray, fn) -> np.ndarray:
    values = []
    for k in range(y.shape[1]):
        known = ~np.isnan(y[:, k])
        if not known.any():
            raise ValueError(f"output {k}: no known target")
        values.append(fn(y[known, k], p[known, k]))
    return np.array(values)


def mae(y: np.ndarray, p: np.ndarray) -> float:
    """Mean absolute error, averaged uniformly over outputs (scikit-learn's ``uniform_average``)."""
    return float(_per_output(np.atleast_2d(y.T).T, np.atleast_2d(p.T).T, lambda a, b: np.mean(np.abs(a - b))).mean())


def rmse(y: np.ndarray, p: np.ndarray) -> float:
    """Root mean squared error per output, averaged uniformly over outputs."""
    return float(_per_output(np.atleast_2d(y.T).T, np.atleast_2d(p.T).T, lambda a, b: math.sqrt(np.mean((a - b) ** 2))).mean())


def r2(y: np.ndarray, p: np.ndarray) -> float:
    """Coefficient of determination 1 - SS_res / SS_tot per output, averaged uniformly.

    Raises:
        ValueError: an output whose known targets are all equal (SS_tot = 0: R² undefined).
    """

    def one(a: np.ndarray, b: np.ndarray) -> float:
        total = float(np.sum((a - a.mean()) ** 2))
        if total == 0.0:
            raise ValueError("r2: constant targets")
        return 1.0 - float(np.sum((a - b) ** 2)) / total

    return float(_per_output(np.atleast_2d(y.T).T, np.atleast_2d(p.T).T, one).mean())


def regression_metrics(records: Sequence[Any], cfg: Any = None) -> dict[str, float]:
    """The ``TaskSpec.metrics`` of a ``regression`` head (records from `mmapps.tasks.postprocess.regression_values`).

    Records carry ``prediction["values"]`` (K numbers) and ``target`` (K numbers, NaN or None for unknown).

    Returns:
        ``mae``, ``rmse``, ``r2`` (uniform averages over the K outputs) each with ``/ci_low``,
        ``/ci_high``, ``/ci_degenerate`` (bootstrap by group); with K > 1 also ``mae/<output>``,
        ``rmse/<output>``, ``r2/<output>`` with their CIs; and ``n``. Use ``higher_is_better=False``
        for ``mae`` / ``rmse`` as the primary metric.
    """
    y, p, groups = regression_arrays(records)
    out: dict[str, float] = {"n": float(len(y))}
    if not len(y):
        return out
    for key, fn in (("mae", mae), ("rmse", rmse), ("r2", r2)):
        put_metric(out, key, fn, [y, p], groups, cfg)
    if y.shape[1] > 1:
        names = task_label_names(cfg, records[0].task, y.shape[1])
        for k, name in enumerate(names):
            for key, fn in (("mae", mae), ("rmse", rmse), ("r2", r2)):
                put_metric(out, f"{key}/{name}", fn, [y[:, k], p[:, k]], groups, cfg)
    return out
