"""The primary-metric drop of a variant against its reference, with the paired-bootstrap 95% CI.

Both models' prediction records of the same split are resampled together by group (patients,
scenes, streams: the unit the splits keep apart), so the CI measures the drop itself, not the
spread of either metric. Used by ``export --quantize`` (the int8 accuracy goal on validation) and
by ``benchmarks/export.py`` (on test).
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: goal on the upper bound of the drop's 95% CI: 0.02 for average precision, 0.01 for AUROC / AUC and the rest
AP_GOAL, DEFAULT_GOAL = 0.02, 0.01


def drop_goal(metric: str) -> float:
    """The accuracy goal for a primary-metric key (``auroc/macro``, ``frame/auc`` -> 0.01; ``bev_ap_r40/Car/moderate`` -> 0.02)."""
    parts = [p.lower() for p in metric.replace("-", "_").split("/")]
    return AP_GOAL if any(p == "ap" or p.startswith(("ap_", "bev_ap", "map")) or p.endswith("_ap") for p in parts) else DEFAULT_GOAL


def parse_max_drop(text: str, domain: Any) -> float | None:
    """``--int8-max-drop``: ``auto`` (the goal of the domain's primary metric), ``none``, or a number >= 0."""
    from mmapps.errors import ConfigError
    from mmapps.train.trainer import primary_key

    if text.lower() == "auto":
        return drop_goal(primary_key(domain))
    if text.lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise ConfigError(f"--int8-max-drop {text!r}: expected auto, none or a metric drop >= 0 (e.g. 0.01 AUROC)")
    return value


def paired_drop(domain: Any, cfg: Any, ref: dict[str, list], got: dict[str, list], resamples: int = 200, seed: int = 0) -> dict[str, Any]:
    """``metric(ref) - metric(got)`` on the domain's primary metric, with its paired percentile-bootstrap 95% CI.

    Args:
        ref, got: task -> `PredictionRecord` lists of the same samples (reference and variant).
        resamples: bootstrap resamples of the groups (0: no CI).

    Returns:
        ``metric``, ``reference``, ``value``, ``drop``, ``drop_ci_low``, ``drop_ci_high`` (NaN without CI),
        ``resamples`` (the finite ones).
    """
    from mmapps.train.trainer import compute_metrics, primary_key

    key = primary_key(domain)
    quick = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"bootstrap_resamples": 0})})

    def metric(records: dict[str, list]) -> float:
        value = compute_metrics(domain, records, quick, records).get(key, float("nan"))
        return float(value) if isinstance(value, (int, float, np.floating)) else float("nan")

    groups = sorted({r.group_id for rows in ref.values() for r in rows})
    resample_a, resample_b = _prepared(domain, cfg, ref, got) or (lambda w: metric(_resampled(ref, w)), lambda w: metric(_resampled(got, w)))
    rng = np.random.default_rng(seed)
    drops = []
    for _ in range(resamples if len(groups) > 1 else 0):
        counts = np.bincount(rng.integers(0, len(groups), len(groups)), minlength=len(groups))
        weight = dict(zip(groups, counts.tolist()))
        a, b = resample_a(weight), resample_b(weight)
        if np.isfinite(a) and np.isfinite(b):
            drops.append(a - b)
    base, value = metric(ref), metric(got)
    low, high = (float(np.percentile(drops, 2.5)), float(np.percentile(drops, 97.5))) if drops else (float("nan"), float("nan"))
    return {"metric": key, "reference": base, "value": value, "drop": base - value, "drop_ci_low": low, "drop_ci_high": high, "resamples": len(drops)}


def _resampled(records: dict[str, list], weight: dict[str, int]) -> dict[str, list]:
    return {task: [r for r in rows for _ in range(weight.get(r.group_id, 0))] for task, rows in records.items()}


def _prepared(domain: Any, cfg: Any, ref: dict[str, list], got: dict[str, list]) -> tuple[Any, Any] | None:
    """Group weights -> primary metric through the task's ``bootstrap_metric`` (arrays built once), or None without one."""
    from mmapps.domain import resolve

    task = domain.primary_task
    if getattr(task, "bootstrap_metric", None) is None or set(ref) != {task.name} or set(got) != {task.name}:
        return None
    rows_a, rows_b = ref[task.name], got[task.name]
    score_a, score_b = resolve(task.bootstrap_metric)(rows_a, cfg), resolve(task.bootstrap_metric)(rows_b, cfg)

    def rows_of(rows: list, weight: dict[str, int]) -> np.ndarray:
        return np.array([i for i, r in enumerate(rows) for _ in range(weight.get(r.group_id, 0))], dtype=np.int64)

    return (lambda w: float(score_a(rows_of(rows_a, w))), lambda w: float(score_b(rows_of(rows_b, w))))
