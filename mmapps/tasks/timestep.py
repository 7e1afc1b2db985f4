"""Per-time-step scores: step-level AUROC / AUPRC (and accuracy for class targets), CIs resampling whole groups."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from mmapps.errors import PredictionError
from mmapps.metrics import accuracy, roc_auc
from mmapps.tasks.intervals import put_metric, task_label_names
from mmapps.tasks.multilabel import _auprc, macro_auprc, macro_auroc, micro_auroc


def timestep_arrays(records: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Records -> per-step targets ``(S, L)`` (NaN = ignored), scores ``(S, L)``, group per step, and
    whether the targets were class indices (then ``L`` = classes and targets are one-hot).

    A record's ``prediction["scores"]`` is ``(T', L)``; its ``target`` is ``(T,)`` class indices
    (-1 = ignored step) or ``(T, L)`` 0/1 values (NaN = ignored); ``T' >= T`` (padding steps beyond
    the target are dropped).

    Raises:
        PredictionError: fewer scored steps than target steps, or a class index out of range, naming the sample.
    """
    ys, ss, gs, class_targets = [], [], [], None
    for r in records:
        scores = np.asarray(r.prediction["scores"], dtype=float)
        scores = scores[:, None] if scores.ndim == 1 else scores
        target = np.asarray([math.nan if v is None else v for v in np.ravel(r.target)] if np.ndim(r.target) <= 1 else r.target, dtype=float)
        is_class = target.ndim == 1 and scores.shape[1] > 1
        class_targets = is_class if class_targets is None else class_targets
        steps = target.shape[0]
        if scores.shape[0] < steps:
            raise PredictionError(f"task {r.task!r}, sample {r.sample_id}: {scores.shape[0]} scored time steps for {steps} target steps; the head must score every step")
        scores = scores[:steps]
        if is_class:
            valid = target >= 0
            if (target[valid] >= scores.shape[1]).any():
                raise PredictionError(f"task {r.task!r}, sample {r.sample_id}: class index {int(target[valid].max())} for {scores.shape[1]} classes")
            onehot = np.full(scores.shape, math.nan)
            onehot[valid] = np.eye(scores.shape[1])[target[valid].astype(int)]
            target = onehot
        target = target[:, None] if target.ndim == 1 else target
        ys.append(target)
        ss.append(scores)
        gs.append(np.full(steps, str(r.group_id)))
    if not ys:
        return np.zeros((0, 0)), np.zeros((0, 0)), np.zeros(0, dtype=str), False
    return np.concatenate(ys), np.concatenate(ss), np.concatenate(gs), bool(class_targets)


def _step_accuracy(y: np.ndarray, s: np.ndarray) -> float:
    known = ~np.isnan(y).any(1)
    return accuracy(y[known].argmax(1), s[known].argmax(1))


def timestep_metrics(records: Sequence[Any], cfg: Any = None) -> dict[str, float]:
    """The ``TaskSpec.metrics`` of a ``timestep`` head: every scored time step is one row.

    Intervals resample whole groups (all steps of a clip, drive or patient together), so
    correlated neighbouring steps do not make them too narrow.

    Returns:
        ``step_auroc/<label>``, ``step_auprc/<label>``, ``step_auroc/macro``, ``step_auroc/micro``,
        ``step_auprc/macro``, with CIs; ``step_accuracy`` (+ CI) for class-index targets;
        ``n_pos/<label>``, ``n_steps`` and ``n`` (records).
    """
    y, s, groups, class_targets = timestep_arrays(records)
    out: dict[str, float] = {"n": float(len(records)), "n_steps": float(len(y))}
    if not len(y):
        return out
    names = task_label_names(cfg, records[0].task, y.shape[1])
    for j, name in enumerate(names):
        out[f"n_pos/{name}"] = float(np.sum(y[:, j] == 1))
        put_metric(out, f"step_auroc/{name}", roc_auc, [y[:, j], s[:, j]], groups, cfg)
        put_metric(out, f"step_auprc/{name}", _auprc, [y[:, j], s[:, j]], groups, cfg)
    for key, fn in (("step_auroc/macro", macro_auroc), ("step_auroc/micro", micro_auroc), ("step_auprc/macro", macro_auprc)):
        put_metric(out, key, fn, [y, s], groups, cfg)
    if class_targets:
        put_metric(out, "step_accuracy", _step_accuracy, [y, s], groups, cfg)
    return out
