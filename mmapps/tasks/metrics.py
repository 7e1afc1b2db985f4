"""Standard dataset-level metrics over prediction records, with bootstrap CIs by group."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from mmapps.metrics import accuracy, bootstrap_ci, macro_f1, roc_auc


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
