"""Findings metrics checked against scikit-learn on the same arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, confusion_matrix, f1_score, roc_auc_score, roc_curve

from mmapps.config import RunConfig
from mmapps.evaluation.records import PredictionRecord
from mmapps_domains.medical.labels import CHEXPERT_FINDINGS, COMPETITION_FINDINGS
from mmapps_domains.medical.metrics import choose_threshold, findings_metrics, operating_point


def _records(n=60, seed=0, nan_fraction=0.15):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, 14)) < 0.35).astype(float)
    s = np.clip(0.5 * y + 0.6 * rng.random((n, 14)), 0, 1)
    y[rng.random((n, 14)) < nan_fraction] = np.nan
    views, sexes = ["PA", "AP", "LATERAL"], ["M", "F"]
    records = [
        PredictionRecord(f"s{i}", f"p{i // 3}", "findings", {"scores": s[i].tolist()}, y[i].tolist(),
                         {"view": views[i % 3], "sex": sexes[i % 2], "age_band": "40-59"})
        for i in range(n)
    ]
    return records, y, s


def _cfg(resamples=200):
    return RunConfig(domain="medical", eval={"bootstrap_resamples": resamples})


def test_auroc_auprc_match_sklearn_and_ci_brackets_estimate():
    records, y, s = _records()
    out = findings_metrics(records, _cfg())
    per = []
    for j, name in enumerate(CHEXPERT_FINDINGS):
        keep = ~np.isnan(y[:, j])
        expected = roc_auc_score(y[keep, j], s[keep, j])
        per.append(expected)
        assert out[f"auroc/{name}"] == pytest.approx(expected, abs=1e-12)
        assert out[f"auprc/{name}"] == pytest.approx(average_precision_score(y[keep, j], s[keep, j]), abs=1e-12)
        assert out[f"auroc/{name}/ci_low"] <= expected <= out[f"auroc/{name}/ci_high"]
    assert out["auroc/macro"] == pytest.approx(np.mean(per))
    keep = ~np.isnan(y)
    assert out["auroc/micro"] == pytest.approx(roc_auc_score(y[keep], s[keep]))
    five = [CHEXPERT_FINDINGS.index(f) for f in COMPETITION_FINDINGS]
    assert out["auroc/competition5"] == pytest.approx(np.mean([per[j] for j in five]))


def test_stratified_auroc_matches_sklearn_on_the_subset():
    records, y, s = _records(n=90)
    out = findings_metrics(records, _cfg(0))
    rows = np.arange(90) % 3 == 0  # view PA
    per = [roc_auc_score(y[rows, j][~np.isnan(y[rows, j])], s[rows, j][~np.isnan(y[rows, j])]) for j in range(14)]
    assert out["auroc/macro/view=PA"] == pytest.approx(np.mean(per))
    assert out["n/sex=F"] == 45 and "auroc/macro/age_band=40-59" in out


def test_ece_by_hand():
    # 15 equal-width bins: two samples in bin [0.8, 0.867) with mean p 0.85 and accuracy 0.5, one in bin 0
    records = [PredictionRecord(str(i), str(i), "findings", {"scores": [p]}, [t], {}) for i, (p, t) in enumerate([(0.84, 1), (0.86, 0), (0.01, 0)])]
    out = findings_metrics(records, _cfg(0))
    assert out["ece/label_0"] == pytest.approx((2 / 3) * abs(0.5 - 0.85) + (1 / 3) * 0.01)


def test_bootstrap_resamples_patients_not_studies():
    records, y, s = _records(n=30)
    a = findings_metrics(records, _cfg(300))
    for r in records:
        r.group_id = r.sample_id  # every study its own patient: a different (narrower) interval
    b = findings_metrics(records, _cfg(300))
    assert a["auroc/macro"] == b["auroc/macro"] and a["auroc/macro/ci_low"] != b["auroc/macro/ci_low"]


def test_threshold_choice_and_operating_point_match_sklearn():
    rng = np.random.default_rng(3)
    y = (rng.random(200) < 0.3).astype(float)
    s = np.clip(0.3 * y + rng.random(200) * 0.7, 0, 1)
    fpr, tpr, thr = roc_curve(y, s)
    assert choose_threshold(y, s, "youden") == pytest.approx(thr[np.argmax(tpr - fpr)])
    t90 = choose_threshold(y, s, "sensitivity", 0.9)
    assert np.mean(s[y == 1] >= t90) >= 0.9
    point = operating_point(y, s, 0.5)
    tn, fp, fn, tp = confusion_matrix(y, s >= 0.5).ravel()
    assert point.sensitivity == pytest.approx(tp / (tp + fn)) and point.specificity == pytest.approx(tn / (tn + fp))
    assert point.ppv == pytest.approx(tp / (tp + fp)) and point.npv == pytest.approx(tn / (tn + fn))
    assert point.f1 == pytest.approx(f1_score(y, s >= 0.5))


def test_operating_metrics_use_validation_thresholds_and_nan_when_undefined():
    records, y, s = _records(seed=1)
    val, yv, sv = _records(seed=2)
    out = findings_metrics(records, _cfg(0), val_records=val)
    keep = ~np.isnan(yv[:, 2])
    fpr, tpr, thr = roc_curve(yv[keep, 2], sv[keep, 2])
    assert out["threshold/Cardiomegaly"] == pytest.approx(thr[np.argmax(tpr - fpr)])
    one_class = [PredictionRecord("a", "a", "findings", {"scores": [0.2]}, [0.0], {}), PredictionRecord("b", "b", "findings", {"scores": [0.4]}, [0.0], {})]
    assert math.isnan(findings_metrics(one_class, _cfg(10))["auroc/label_0"])
