"""Multi-label metrics: per-label and macro/micro AUROC and AUPRC with group-bootstrap CIs."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from mmapps.errors import PredictionError
from mmapps.metrics import average_precision, roc_auc
from mmapps.tasks.intervals import put_metric, task_label_names


def multilabel_arrays(records: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Records -> targets ``(N, L)`` (NaN = unknown), scores ``(N, L)``, groups ``(N,)``.

    Raises:
        PredictionError: a record whose scores or target do not have L entries, naming the sample.
    """
    if not records:
        return np.zeros((0, 0)), np.zeros((0, 0)), np.zeros(0, dtype=str)
    width = len(records[0].prediction["scores"])
    for r in records:
        target = r.target if isinstance(r.target, (list, tuple)) else [r.target]
        if len(r.prediction["scores"]) != width or len(target) != width:
            raise PredictionError(
                f"task {r.task!r}, sample {r.sample_id}: multi-label metrics need {width} scores and {width} targets per sample; "
                f"found {len(r.prediction['scores'])} scores and {len(target)} targets (targets: one 0/1 value per label, NaN for unknown)"
            )
    y = np.array([[math.nan if v is None else float(v) for v in (r.target if isinstance(r.target, (list, tuple)) else [r.target])] for r in records])
    s = np.array([r.prediction["scores"] for r in records], dtype=float)
    return y, s, np.array([str(r.group_id) for r in records])


def _macro(metric, y: np.ndarray, s: np.ndarray) -> float:
    values = []
    for j in range(y.shape[1]):
        try:
            values.append(metric(y[:, j], s[:, j]))
        except ValueError:  # this label has one class only in these rows
            continue
    if not values:
        raise ValueError("no label has both classes")
    return float(np.mean(values))


def macro_auroc(y: np.ndarray, s: np.ndarray) -> float:
    """Mean AUROC over the labels where it is defined (both classes present)."""
    return _macro(roc_auc, y, s)


def macro_auprc(y: np.ndarray, s: np.ndarray) -> float:
    """Mean average precision over the labels with a positive and a negative."""
    return _macro(lambda a, b: _auprc(a, b), y, s)


def micro_auroc(y: np.ndarray, s: np.ndarray) -> float:
    """AUROC of every known (sample, label) pair pooled."""
    return roc_auc(y.ravel(), s.ravel())


def micro_auprc(y: np.ndarray, s: np.ndarray) -> float:
    """Average precision of every known (sample, label) pair pooled."""
    return _auprc(y.ravel(), s.ravel())


def _auprc(y: np.ndarray, s: np.ndarray) -> float:
    known = y[~np.isnan(y)]
    if not (known == 0).any():  # AP is 1 whatever the scores: uninformative, as AUROC is
        raise ValueError("average precision needs a negative target")
    return average_precision(y, s)


def multilabel_metrics(records: Sequence[Any], cfg: Any = None) -> dict[str, float]:
    """The ``TaskSpec.metrics`` of a ``multilabel`` head (records from `mmapps.tasks.postprocess.sigmoid_scores`).

    Records carry ``prediction["scores"]`` (L probabilities) and ``target`` (L values of 0/1, NaN or
    None for an unknown label, which every metric drops for that label only).

    Returns:
        ``auroc/<label>``, ``auprc/<label>``, ``auroc/macro``, ``auroc/micro``, ``auprc/macro``,
        ``auprc/micro``, each with ``/ci_low``, ``/ci_high``, ``/ci_degenerate`` (bootstrap by group);
        ``n_pos/<label>``, ``n_known/<label>`` and ``n``. Labels are named after the task's labels.
        AUROC needs both classes and AUPRC a positive and a negative: NaN otherwise.
    """
    y, s, groups = multilabel_arrays(records)
    out: dict[str, float] = {"n": float(len(y))}
    if not len(y):
        return out
    names = task_label_names(cfg, records[0].task, y.shape[1])
    for j, name in enumerate(names):
        out[f"n_pos/{name}"] = float(np.sum(y[:, j] == 1))
        out[f"n_known/{name}"] = float(np.sum(~np.isnan(y[:, j])))
        put_metric(out, f"auroc/{name}", roc_auc, [y[:, j], s[:, j]], groups, cfg)
        put_metric(out, f"auprc/{name}", _auprc, [y[:, j], s[:, j]], groups, cfg)
    for key, fn in (("auroc/macro", macro_auroc), ("auroc/micro", micro_auroc), ("auprc/macro", macro_auprc), ("auprc/micro", micro_auprc)):
        put_metric(out, key, fn, [y, s], groups, cfg)
    return out
