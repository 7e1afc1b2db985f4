"""``pos_weight`` of a multi-label BCE from the training split: negatives / positives per label."""

from __future__ import annotations

from typing import Any

import numpy as np

from mmapps.errors import ConfigError, DataError

MAX_POS_WEIGHT = 50.0


def pos_weight_from_targets(train_targets: np.ndarray, max_weight: float = MAX_POS_WEIGHT) -> list[float]:
    """negatives / positives per label of ``(N, L)`` targets (NaN = unknown, not counted), clamped to [1, max_weight].

    A label with more positives than negatives gets 1 (down-weighting positives is never what a
    rare-finding task wants); one without positives gets its negative count (capped), which weights
    nothing since no positive term exists. The same rule as the medical domain's findings loss.
    """
    y = np.asarray(train_targets, dtype=float)
    pos = np.sum(y == 1, axis=0).astype(float)
    neg = np.sum(y == 0, axis=0).astype(float)
    return np.clip(neg / np.maximum(pos, 1.0), 1.0, max_weight).tolist()


def train_targets(train_set: Any, task: str) -> np.ndarray:
    """``(N, L)`` targets of `task` over a training set.

    Fast path: a dataset with ``task_targets(task) -> array (N, L)`` (from its index, no input
    read). Otherwise every sample is loaded once (``train_set[i].targets[task]``), inputs included.

    Raises:
        DataError: no sample carries a target for `task`.
    """
    if hasattr(train_set, "task_targets"):
        return np.asarray(train_set.task_targets(task), dtype=float)
    rows = []
    for i in range(len(train_set)):
        target = train_set[i].targets.get(task)
        if target is not None:
            rows.append(np.asarray(target.detach().cpu() if hasattr(target, "detach") else target, dtype=float).ravel())
    if not rows:
        raise DataError(f"pos_weight=auto for task {task!r}: no training sample has a {task!r} target to count positives in")
    return np.stack(rows)


def configured_pos_weight(value: Any, task: str, n_labels: int | None = None) -> Any:
    """Validate a ``data.options.pos_weight`` value: ``"auto"``, ``"none"``/None, a list of floats, or task -> one of those.

    Returns:
        ``"auto"``, None, or a list of floats.

    Raises:
        ConfigError: naming the field, the value found and what is accepted.
    """
    if isinstance(value, dict):
        value = value.get(task, "none")
    if value is None or value == "none":
        return None
    if value == "auto":
        return "auto"
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in value):
        if n_labels is not None and len(value) != n_labels:
            raise ConfigError(f"data.options.pos_weight: {len(value)} weights for task {task!r}, which has {n_labels} labels")
        return [float(v) for v in value]
    raise ConfigError(f"data.options.pos_weight: found {value!r}; expected auto, none, a list of positive numbers (one per label), or a mapping task -> one of those")
