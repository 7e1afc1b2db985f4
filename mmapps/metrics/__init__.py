"""Metric registry entries (NumPy, checked against scikit-learn) and bootstrap confidence intervals."""

from mmapps.metrics.bootstrap import ConfidenceInterval, bootstrap_ci
from mmapps.metrics.classification import (
    accuracy,
    average_precision,
    expected_calibration_error,
    macro_f1,
    precision_recall_curve,
    roc_auc,
    roc_curve,
)
from mmapps.metrics.proportion import wilson_interval

__all__ = [
    "ConfidenceInterval",
    "accuracy",
    "average_precision",
    "bootstrap_ci",
    "expected_calibration_error",
    "macro_f1",
    "precision_recall_curve",
    "roc_auc",
    "roc_curve",
    "wilson_interval",
]
