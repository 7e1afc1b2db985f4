"""Metrics against scikit-learn on the same arrays, and bootstrap CIs on hand-checkable cases."""

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from mmapps.metrics import accuracy, average_precision, bootstrap_ci, expected_calibration_error, macro_f1, precision_recall_curve, roc_auc, roc_curve, wilson_interval


@pytest.mark.parametrize("seed", range(5))
def test_ranking_metrics_match_sklearn(seed: int):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 200)
    score = np.round(rng.random(200) * 0.5 + 0.3 * y, 2)  # ties on purpose
    assert roc_auc(y, score) == pytest.approx(skm.roc_auc_score(y, score), abs=1e-12)
    assert average_precision(y, score) == pytest.approx(skm.average_precision_score(y, score), abs=1e-12)
    fpr, tpr, _ = roc_curve(y, score)
    sk_fpr, sk_tpr, _ = skm.roc_curve(y, score, drop_intermediate=False)
    assert np.allclose(fpr, sk_fpr) and np.allclose(tpr, sk_tpr)
    recall, precision, _ = precision_recall_curve(y, score)
    sk_p, sk_r, _ = skm.precision_recall_curve(y, score)
    assert np.allclose(recall, sk_r[:-1][::-1]) and np.allclose(precision, sk_p[:-1][::-1])


def test_nan_targets_are_ignored():
    y = np.array([1, 0, np.nan, 1, 0])
    s = np.array([0.9, 0.1, 0.99, 0.4, 0.6])
    assert roc_auc(y, s) == pytest.approx(skm.roc_auc_score([1, 0, 1, 0], [0.9, 0.1, 0.4, 0.6]))


def test_single_class_is_undefined():
    with pytest.raises(ValueError):
        roc_auc([1, 1, 1], [0.1, 0.2, 0.3])


def test_accuracy_and_macro_f1_match_sklearn():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 4, 100), rng.integers(0, 4, 100)
    assert accuracy(y, p) == pytest.approx(skm.accuracy_score(y, p))
    assert macro_f1(y, p, 4) == pytest.approx(skm.f1_score(y, p, average="macro"))


def test_ece_hand_worked():
    # bins of width 1/15: 0.05 -> bin 0, 0.95 -> bin 14.
    y = np.array([0, 0, 1, 1])
    p = np.array([0.05, 0.05, 0.95, 0.95])
    assert expected_calibration_error(y, p) == pytest.approx(0.05)
    # one bin holding p = 0.5 for two samples, one positive: perfectly calibrated.
    assert expected_calibration_error(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.0)
    # 0.7 predicted for 3 samples, 1 positive: |1/3 - 0.7|.
    assert expected_calibration_error(np.array([1, 0, 0]), np.array([0.7, 0.7, 0.7])) == pytest.approx(0.7 - 1 / 3)


def test_bootstrap_ci_is_reproducible_brackets_the_estimate_and_counts_degenerate():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    s = rng.random(300) + 0.5 * y
    a = bootstrap_ci(roc_auc, [y, s], n_resamples=300, seed=3)
    b = bootstrap_ci(roc_auc, [y, s], n_resamples=300, seed=3)
    assert a == b
    assert a.low < a.estimate < a.high and a.n_degenerate == 0
    # Tiny data with one positive: many resamples miss it and are counted, not crashed on.
    tiny = bootstrap_ci(roc_auc, [np.array([1, 0, 0, 0]), np.array([0.9, 0.1, 0.2, 0.3])], n_resamples=200, seed=0)
    assert tiny.n_degenerate > 0 and tiny.estimate == 1.0


def test_bootstrap_by_group_keeps_groups_together():
    # Two groups with constant values: any resample's mean is 0, 5 or 10 when resampling by group.
    values = np.array([0.0, 0.0, 0.0, 10.0, 10.0, 10.0])
    groups = np.array(["p1", "p1", "p1", "p2", "p2", "p2"])
    seen = set()

    def mean(v):
        seen.add(round(float(v.mean()), 6))
        return float(v.mean())

    ci = bootstrap_ci(mean, [values], groups=groups, n_resamples=200, seed=0)
    assert seen <= {0.0, 5.0, 10.0}
    assert ci.low == 0.0 and ci.high == 10.0
    assert math.isclose(ci.estimate, 5.0)


@pytest.mark.parametrize(("k", "n", "confidence"), [(17, 59, 0.95), (0, 10, 0.95), (10, 10, 0.9), (3, 7, 0.99)])
def test_wilson_interval_matches_scipy(k, n, confidence):
    from scipy.stats import binomtest

    theirs = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    assert wilson_interval(k, n, confidence) == pytest.approx((theirs.low, theirs.high), abs=1e-12)
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(n + 1, n)
