"""Drift statistics: PSI and KS against independent oracles, thresholds on shifted vs in-distribution windows."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from mmapps.serve.drift import (
    PSI_ALERT,
    DriftReferenceError,
    DriftWindow,
    build_reference,
    categorical_reference,
    numeric_reference,
    psi,
)


def test_psi_hand_worked():
    # (0.8 - 0.5) ln(0.8 / 0.5) + (0.2 - 0.5) ln(0.2 / 0.5)
    expected = 0.3 * math.log(1.6) + 0.3 * math.log(2.5)
    assert psi(np.array([0.5, 0.5]), np.array([0.8, 0.2])) == pytest.approx(expected, rel=1e-12)
    assert psi(np.array([0.25] * 4), np.array([0.25] * 4)) == 0.0


def test_categorical_psi_pools_unseen_categories():
    ref = build_reference(categorical_reference(["PA"] * 50 + ["AP"] * 50), "test")
    st = ref.stat(["PA"] * 80 + ["LL"] * 20)  # LL never seen in validation -> <other>
    e, o = np.array([0.5, 0.5, 0.0]), np.array([0.0, 0.8, 0.2])  # sorted: AP, PA, <other>
    assert st.psi == pytest.approx(psi(e, o))
    assert st.ks is None and st.n == 100


def test_ks_matches_scipy_on_an_exact_reference():
    # Ten equal bins of U(0, 1): the piecewise-linear reference CDF is exactly the uniform CDF.
    ref = build_reference({"bin_edges": np.linspace(0, 1, 11).tolist(), "counts": [7] * 10}, "test")
    rng = np.random.default_rng(3)
    for values in (rng.uniform(size=200), rng.beta(2, 1, size=150)):
        st = ref.stat(values)
        oracle = stats.kstest(values, "uniform", method="exact")
        assert st.ks == pytest.approx(oracle.statistic, abs=1e-12)
        assert st.ks_pvalue == pytest.approx(oracle.pvalue, rel=1e-6, abs=1e-300)


def test_quantile_and_histogram_forms_agree():
    hist = build_reference({"bin_edges": [0.0, 1.0, 3.0], "counts": [1, 3]}, "t")
    quant = build_reference({"quantiles": [0.0, 1.0, 3.0], "probs": [0.0, 0.25, 1.0]}, "t")
    v = np.array([0.5, 1.5, 2.0, 2.9, -1.0, 4.0])
    expected = [0.125, 0.4375, 0.625, 0.9625, 0.0, 1.0]
    np.testing.assert_allclose(hist.cdf(v), expected, atol=1e-12)
    np.testing.assert_allclose(quant.cdf(v), expected, atol=1e-12)


@pytest.mark.parametrize("spec", [
    {"bin_edges": [0, 1], "counts": [1, 2]},
    {"quantiles": [0.0, 0.5, 0.4]},
    {"quantiles": [0.0, 1.0], "probs": [0.1, 1.0]},
    {"mean": 0.3},
    {"categories": {}},
])
def test_bad_references_are_refused_with_the_feature_name(spec):
    with pytest.raises(DriftReferenceError, match="model.json drift.scores 'effusion'"):
        DriftWindow({"effusion": spec}, where="model.json drift.scores")


@pytest.mark.parametrize("seed", range(5))
def test_drift_crosses_threshold_on_shifted_scores_only(seed):
    rng = np.random.default_rng(seed)
    reference = {"p": numeric_reference(rng.beta(2, 5, size=2000))}
    same, shifted = DriftWindow(reference, window=300), DriftWindow(reference, window=300)
    same.add("p", rng.beta(2, 5, size=300))
    shifted.add("p", rng.beta(3.5, 4, size=300))  # mean 0.29 -> 0.47: a calibration shift
    s, t = same.stats()["p"], shifted.stats()["p"]
    assert not s.drifted and s.psi < PSI_ALERT and s.ks_pvalue > 0.01
    assert t.drifted and t.psi > PSI_ALERT and t.ks_pvalue < 1e-6


def test_window_slides_and_needs_min_samples():
    w = DriftWindow({"p": numeric_reference(np.linspace(0, 1, 101))}, window=150, min_samples=100)
    w.add("p", np.full(99, 0.9))
    assert w.stats() == {}
    w.add("p", [0.9, float("nan"), float("inf")])  # non-finite values dropped
    assert w.stats()["p"].n == 100
    rng = np.random.default_rng(0)
    w.add("p", rng.uniform(size=150))  # the shifted values slide out
    st = w.stats()["p"]
    assert st.n == 150 and not st.drifted
    w.add("unknown", [1.0])  # no reference: ignored
    assert set(w.stats()) == {"p"}
