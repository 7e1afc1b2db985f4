"""Findings metrics: per-finding AUROC with patient-bootstrap CIs, macro / micro / competition AUROC,
AUPRC, ECE, AUROC stratified by view / sex / age band, and operating points chosen on validation.

Targets use NaN for ignored labels (u-ignore, masked blanks); every metric drops them per finding.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Literal, NamedTuple, Sequence

import numpy as np

from mmapps.metrics.bootstrap import bootstrap_ci
from mmapps.metrics.classification import average_precision, expected_calibration_error, roc_auc, roc_curve
from mmapps_domains.medical.labels import CHEXPERT_FINDINGS, COMPETITION_FINDINGS

STRATA = ("view", "sex", "age_band")


class FindingArrays(NamedTuple):
    """Records as arrays: targets ``(N, L)`` with NaN, scores ``(N, L)``, groups ``(N,)``, metas."""

    y: np.ndarray
    s: np.ndarray
    groups: np.ndarray
    meta: list[dict[str, Any]]


def records_to_arrays(records: Sequence[Any]) -> FindingArrays:
    """`PredictionRecord`s with ``prediction["scores"]`` and a target list -> `FindingArrays`."""
    y = np.array([[math.nan if v is None else v for v in r.target] for r in records], dtype=float)
    s = np.array([r.prediction["scores"] for r in records], dtype=float)
    return FindingArrays(y, s, np.array([str(r.group_id) for r in records]), [dict(r.meta or {}) for r in records])


def macro_auroc_resampler(records: Sequence[Any], cfg: Any = None) -> Callable[[np.ndarray], float]:
    """``TaskSpec.bootstrap_metric``: ``auroc/macro`` of a resample (row indices) of `records`, arrays built once."""
    arrays = records_to_arrays(records)

    def metric(rows: np.ndarray) -> float:
        try:
            return macro_auroc(arrays.y[rows], arrays.s[rows])
        except ValueError:
            return math.nan

    return metric


def finding_names(cfg: Any, n_labels: int) -> list[str]:
    options = getattr(getattr(cfg, "data", None), "options", None) or {}
    names = list(options.get("findings") or CHEXPERT_FINDINGS)
    return names if len(names) == n_labels else [f"label_{j}" for j in range(n_labels)]


def macro_auroc(y: np.ndarray, s: np.ndarray, columns: Sequence[int] | None = None) -> float:
    """Mean AUROC over the label columns where it is defined; ValueError when none is."""
    values = []
    for j in columns if columns is not None else range(y.shape[1]):
        try:
            values.append(roc_auc(y[:, j], s[:, j]))
        except ValueError:
            continue
    if not values:
        raise ValueError("macro AUROC undefined: no label has both classes")
    return float(np.mean(values))


def micro_auroc(y: np.ndarray, s: np.ndarray) -> float:
    """AUROC of all (sample, label) pairs pooled."""
    return roc_auc(y.ravel(), s.ravel())


class OperatingPoint(NamedTuple):
    threshold: float
    sensitivity: float
    specificity: float
    ppv: float
    npv: float
    f1: float


def choose_threshold(y: np.ndarray, s: np.ndarray, method: Literal["youden", "sensitivity"] = "youden", target: float = 0.9) -> float:
    """Threshold (predict positive when score >= threshold) chosen on validation data.

    Args:
        y, s: one label's targets (NaN ignored) and scores.
        method: ``youden`` maximises sensitivity + specificity - 1; ``sensitivity`` takes the highest
            threshold reaching ``target`` sensitivity.
        target: target sensitivity.
    """
    curve = roc_curve(y, s)
    fpr, tpr, thresholds = curve.x[1:], curve.y[1:], curve.thresholds[1:]
    if len(thresholds) == 0:
        raise ValueError("choose_threshold: no scores")
    if method == "youden":
        return float(thresholds[int(np.argmax(tpr - fpr))])
    reaching = np.flatnonzero(tpr >= target)
    return float(thresholds[reaching[0]] if len(reaching) else thresholds[-1])


def operating_point(y: np.ndarray, s: np.ndarray, threshold: float) -> OperatingPoint:
    """Sensitivity, specificity, PPV, NPV and F1 at ``score >= threshold`` (nan when a ratio is 0/0)."""
    keep = ~np.isnan(y)
    truth, pred = y[keep] == 1, s[keep] >= threshold
    tp, fp = float(np.sum(truth & pred)), float(np.sum(~truth & pred))
    fn, tn = float(np.sum(truth & ~pred)), float(np.sum(~truth & ~pred))
    ratio = lambda a, b: a / b if b else math.nan  # noqa: E731
    return OperatingPoint(threshold, ratio(tp, tp + fn), ratio(tn, tn + fp), ratio(tp, tp + fp), ratio(tn, tn + fn), ratio(2 * tp, 2 * tp + fp + fn))


def _ci(out: dict, key: str, fn, arrays, groups, cfg) -> None:
    n = int(getattr(getattr(cfg, "eval", None), "bootstrap_resamples", 200))
    level = float(getattr(getattr(cfg, "eval", None), "ci_level", 0.95))
    if n <= 0:
        try:
            out[key] = float(fn(*arrays))
        except ValueError:
            out[key] = math.nan
        return
    ci = bootstrap_ci(fn, arrays, groups=groups, n_resamples=n, level=level, seed=int(getattr(cfg, "seed", 0) or 0))
    out.update({key: ci.estimate, f"{key}/ci_low": ci.low, f"{key}/ci_high": ci.high})


def findings_metrics(records: Sequence[Any], cfg: Any = None, val_records: Sequence[Any] | None = None) -> dict[str, float]:
    """The ``TaskSpec.metrics`` of the findings task.

    Args:
        records: test (or validation) prediction records.
        cfg: run config (bootstrap resamples, CI level, seed, findings names; ``eval.options``
            ``threshold_method`` youden | sensitivity and ``target_sensitivity``).
        val_records: validation records; when given, a threshold per finding is chosen on them and
            ``sens/``, ``spec/``, ``ppv/``, ``npv/``, ``f1/`` and ``threshold/<finding>`` are added.

    Returns:
        Flat dict: ``auroc/<finding>`` (+ ``/ci_low``, ``/ci_high``), ``auroc/macro`` (+ CI),
        ``auroc/micro``, ``auroc/competition5``, ``auprc/<finding>``, ``auprc/macro``,
        ``ece/<finding>``, ``ece/macro``, ``n_pos/<finding>``, ``auroc/macro/<stratum>=<value>``.
    """
    arrays = records_to_arrays(records)
    y, s, groups = arrays.y, arrays.s, arrays.groups
    names = finding_names(cfg, y.shape[1])
    out: dict[str, float] = {"n_studies": float(len(y))}
    for j, name in enumerate(names):
        out[f"n_pos/{name}"] = float(np.nansum(y[:, j] == 1))
        _ci(out, f"auroc/{name}", lambda a, b: roc_auc(a, b), [y[:, j], s[:, j]], groups, cfg)
        for key, fn in ((f"auprc/{name}", average_precision), (f"ece/{name}", expected_calibration_error)):
            try:
                out[key] = float(fn(y[:, j], s[:, j]))
            except ValueError:
                out[key] = math.nan
    _ci(out, "auroc/macro", macro_auroc, [y, s], groups, cfg)
    for key, fn in (("auroc/micro", micro_auroc),):
        try:
            out[key] = fn(y, s)
        except ValueError:
            out[key] = math.nan
    competition = [names.index(f) for f in COMPETITION_FINDINGS if f in names]
    try:
        out["auroc/competition5"] = macro_auroc(y, s, competition) if competition else math.nan
    except ValueError:
        out["auroc/competition5"] = math.nan
    for key in ("auprc", "ece"):
        values = [out[f"{key}/{n}"] for n in names if not math.isnan(out[f"{key}/{n}"])]
        out[f"{key}/macro"] = float(np.mean(values)) if values else math.nan
    for stratum in STRATA:
        values = np.array([str(m.get(stratum)) for m in arrays.meta])
        for value in sorted(set(values)):
            rows = values == value
            try:
                out[f"auroc/macro/{stratum}={value}"] = macro_auroc(y[rows], s[rows])
            except ValueError:
                out[f"auroc/macro/{stratum}={value}"] = math.nan
            out[f"n/{stratum}={value}"] = float(rows.sum())
    if val_records:
        out.update(operating_metrics(arrays, records_to_arrays(val_records), names, cfg))
    return out


def operating_metrics(test: FindingArrays, val: FindingArrays, names: Sequence[str], cfg: Any = None) -> dict[str, float]:
    """Per-finding operating points at thresholds chosen on validation, applied to test."""
    options = getattr(getattr(cfg, "eval", None), "options", None) or {}
    method = options.get("threshold_method", "youden")
    target = float(options.get("target_sensitivity", 0.9))
    out: dict[str, float] = {}
    for j, name in enumerate(names):
        try:
            threshold = choose_threshold(val.y[:, j], val.s[:, j], method, target)
        except ValueError:
            continue
        point = operating_point(test.y[:, j], test.s[:, j], threshold)
        for key, value in zip(("threshold", "sens", "spec", "ppv", "npv", "f1"), point):
            out[f"{key}/{name}"] = float(value)
    for key in ("sens", "spec", "ppv", "npv", "f1"):
        values = [v for k, v in out.items() if k.startswith(key + "/") and not math.isnan(v)]
        out[f"{key}/macro"] = float(np.mean(values)) if values else math.nan
    return out
