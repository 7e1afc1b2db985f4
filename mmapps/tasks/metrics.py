"""Standard dataset-level metrics over prediction records, with bootstrap CIs by group.

The ready-made ``TaskSpec.metrics`` functions, one per standard head (table in docs/parts.md):
`multiclass_metrics`, `multilabel_metrics`, `regression_metrics`, `timestep_metrics`; all write
``<metric>/ci_low`` and ``<metric>/ci_high`` (see `mmapps.tasks.intervals`).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from mmapps.errors import PredictionError
from mmapps.metrics import accuracy, bootstrap_ci, macro_f1, roc_auc
from mmapps.tasks.multilabel import multilabel_metrics
from mmapps.tasks.regression import regression_metrics
from mmapps.tasks.timestep import timestep_metrics

__all__ = ["check_finite_predictions", "multiclass_metrics", "multilabel_metrics", "regression_metrics", "timestep_metrics"]

MAX_NAMED_SAMPLES = 5


def _non_finite(value: Any) -> bool:
    """True when a prediction value (number, array, tensor, or nested list/dict of them) holds NaN/inf."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return False
    if isinstance(value, dict):
        return any(_non_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return not bool(np.isfinite(np.asarray(value, dtype=float)).all())
        return any(_non_finite(v) for v in value)
    if isinstance(value, (int, float, np.number)):
        return not math.isfinite(float(value))
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray) and value.dtype.kind in "fc":
        return not bool(np.isfinite(value).all())
    return False


def check_finite_predictions(records: Sequence[Any], task: str) -> None:
    """Refuse to compute metrics on NaN/inf predictions: they make every metric meaningless (an
    AUROC of 0.5, an AP of 0) instead of failing.

    Raises:
        PredictionError: naming the task, how many samples and the first sample ids.
    """
    bad = [r.sample_id for r in records if _non_finite(r.prediction)]
    if bad:
        named = ", ".join(map(str, bad[:MAX_NAMED_SAMPLES])) + (f" and {len(bad) - MAX_NAMED_SAMPLES} more" if len(bad) > MAX_NAMED_SAMPLES else "")
        raise PredictionError(
            f"task {task!r}: the model predicted NaN or infinite values for {len(bad)} of {len(records)} samples ({named}); "
            "no metric is computed on them. The weights are finite (checked at load), so the inputs of these samples hold "
            "NaN/inf or extreme values, or training diverged (lower train.lr, keep train.grad_clip)"
        )


def multiclass_metrics(records: Sequence[Any], cfg: Any) -> dict[str, float]:
    """Accuracy, macro F1 and macro one-vs-rest AUROC, each with a bootstrap CI resampled by group.

    Records carry ``prediction["scores"]`` (class probabilities) and an integer ``target``.
    """
    y = np.array([r.target for r in records], dtype=int)
    scores = np.array([r.prediction["scores"] for r in records], dtype=float)
    groups = np.array([r.group_id for r in records])
    num_classes = scores.shape[1]

    def acc(y_: np.ndarray, s_: np.ndarray) -> float:
        return accuracy(y_, s_.argmax(1))

    def f1(y_: np.ndarray, s_: np.ndarray) -> float:
        return macro_f1(y_, s_.argmax(1), num_classes)

    def auroc(y_: np.ndarray, s_: np.ndarray) -> float:
        per_class = [roc_auc(y_ == c, s_[:, c]) for c in range(num_classes) if 0 < (y_ == c).sum() < len(y_)]
        if not per_class:
            raise ValueError("auroc undefined: a single class")
        return float(np.mean(per_class))

    out: dict[str, float] = {}
    for name, fn in (("accuracy", acc), ("macro_f1", f1), ("macro_auroc", auroc)):
        n = cfg.eval.bootstrap_resamples
        if n:
            ci = bootstrap_ci(fn, [y, scores], groups=groups, n_resamples=n, level=cfg.eval.ci_level, seed=cfg.seed)
            out.update({name: ci.estimate, f"{name}/ci_low": ci.low, f"{name}/ci_high": ci.high, f"{name}/ci_degenerate": float(ci.n_degenerate)})
        else:
            try:
                out[name] = fn(y, scores)
            except ValueError:
                out[name] = math.nan
    return out
