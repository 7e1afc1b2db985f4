"""Core task functions against scikit-learn: multi-label, regression, per-time-step metrics, pos_weight=auto."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from mmapps.errors import ConfigError, PredictionError
from mmapps.evaluation.records import PredictionRecord
from mmapps.metrics import bootstrap_ci
from mmapps.tasks.losses import AutoPosWeightBCE, MultiLabelBCE
from mmapps.tasks.metrics import multilabel_metrics, regression_metrics, timestep_metrics


def _cfg(resamples: int = 0, **options):
    return SimpleNamespace(domain="no-such-domain", seed=3, eval=SimpleNamespace(bootstrap_resamples=resamples, ci_level=0.9), data=SimpleNamespace(options=options))


def _records(pred_key: str, preds, targets, groups=None, task="t"):
    groups = groups if groups is not None else [f"g{i}" for i in range(len(preds))]
    return [PredictionRecord(f"s{i:03d}", g, task, {pred_key: list(map(float, np.atleast_1d(p)))}, t) for i, (p, t, g) in enumerate(zip(preds, targets, groups))]


def _multilabel_data(seed: int = 0, n: int = 60, labels: int = 3):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, labels)) < 0.4).astype(float)
    s = np.clip(0.35 * y + rng.random((n, labels)) * 0.8, 0, 1)
    y[rng.random((n, labels)) < 0.1] = np.nan  # unknown labels
    return y, s


def test_multilabel_metrics_equal_scikit_learn_per_label_macro_and_micro():
    y, s = _multilabel_data()
    targets = [[None if math.isnan(v) else v for v in row] for row in y]
    out = multilabel_metrics(_records("scores", s, targets), _cfg())
    per_auc, per_ap = [], []
    for j in range(3):
        known = ~np.isnan(y[:, j])
        per_auc.append(skm.roc_auc_score(y[known, j], s[known, j]))
        per_ap.append(skm.average_precision_score(y[known, j], s[known, j]))
        assert out[f"auroc/label_{j}"] == pytest.approx(per_auc[-1], abs=1e-12)
        assert out[f"auprc/label_{j}"] == pytest.approx(per_ap[-1], abs=1e-12)
        assert out[f"n_pos/label_{j}"] == np.sum(y[:, j] == 1) and out[f"n_known/label_{j}"] == known.sum()
    assert out["auroc/macro"] == pytest.approx(np.mean(per_auc)) and out["auprc/macro"] == pytest.approx(np.mean(per_ap))
    known = ~np.isnan(y)
    assert out["auroc/micro"] == pytest.approx(skm.roc_auc_score(y[known], s[known]))
    assert out["auprc/micro"] == pytest.approx(skm.average_precision_score(y[known], s[known]))
    assert "auroc/macro/ci_low" not in out, "no CI when bootstrap_resamples is 0"


def test_multilabel_cis_resample_groups_like_bootstrap_ci_with_scikit_learn():
    y, s = _multilabel_data(seed=1, n=40)
    y[:, 0] = np.where(np.isnan(y[:, 0]), 0.0, y[:, 0])
    groups = [f"p{i // 4}" for i in range(40)]  # 4 samples per patient
    out = multilabel_metrics(_records("scores", s, y.tolist(), groups), _cfg(resamples=200))
    oracle = bootstrap_ci(lambda a, b: skm.roc_auc_score(a, b), [y[:, 0], s[:, 0]], groups=np.array(groups), n_resamples=200, level=0.9, seed=3)
    assert (out["auroc/label_0/ci_low"], out["auroc/label_0/ci_high"]) == pytest.approx((oracle.low, oracle.high))
    ungrouped = bootstrap_ci(lambda a, b: skm.roc_auc_score(a, b), [y[:, 0], s[:, 0]], n_resamples=200, level=0.9, seed=3)
    assert (ungrouped.low, ungrouped.high) != pytest.approx((oracle.low, oracle.high)), "grouping must change the resamples"
    for key in ("auroc/macro", "auroc/micro", "auprc/macro", "auprc/micro"):
        assert out[f"{key}/ci_low"] <= out[key] <= out[f"{key}/ci_high"]


def test_multilabel_undefined_label_is_nan_and_bad_widths_name_the_sample():
    s = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    out = multilabel_metrics(_records("scores", s, [[1, 1], [0, 1], [1, 1]]), _cfg())
    assert math.isnan(out["auroc/label_1"]) and math.isnan(out["auprc/label_1"])  # one class only
    assert out["auroc/macro"] == pytest.approx(1.0)
    with pytest.raises(PredictionError, match=r"sample s001.*2 scores and 3 targets"):
        multilabel_metrics(_records("scores", s, [[1, 1], [0, 1, 0], [1, 1]]), _cfg())


def test_regression_metrics_equal_scikit_learn_single_and_multi_output():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(50, 2))
    p = y + rng.normal(0, 0.5, size=(50, 2))
    out = regression_metrics(_records("values", p, y.tolist()), _cfg())
    assert out["mae"] == pytest.approx(skm.mean_absolute_error(y, p))
    assert out["rmse"] == pytest.approx(np.mean([math.sqrt(skm.mean_squared_error(y[:, k], p[:, k])) for k in range(2)]))
    assert out["r2"] == pytest.approx(skm.r2_score(y, p))
    assert out["r2/label_1"] == pytest.approx(skm.r2_score(y[:, 1], p[:, 1]))
    single = regression_metrics(_records("values", p[:, 0], y[:, 0].tolist(), [f"g{i // 5}" for i in range(50)]), _cfg(resamples=100))
    assert single["mae"] == pytest.approx(skm.mean_absolute_error(y[:, 0], p[:, 0])) and "mae/label_0" not in single
    assert single["rmse/ci_low"] < single["rmse"] < single["rmse/ci_high"]
    targets = y[:, 0].tolist()
    targets[3] = None  # unknown target: dropped
    keep = np.arange(50) != 3
    assert regression_metrics(_records("values", p[:, 0], targets), _cfg())["mae"] == pytest.approx(skm.mean_absolute_error(y[keep, 0], p[keep, 0]))


def test_timestep_metrics_class_targets_drop_ignored_and_padding_steps():
    rng = np.random.default_rng(0)
    records, flat_y, flat_s = [], [], []
    for i in range(8):
        steps = 5 + i % 3
        target = rng.integers(0, 3, steps)
        target[0] = -1  # ignored step
        scores = rng.dirichlet(np.ones(3), steps + 2)  # two padding steps beyond the target
        scores[np.arange(steps), target] += 0.5 * (target >= 0)
        records.append(PredictionRecord(f"s{i}", f"clip{i // 2}", "events", {"scores": scores.tolist()}, target.tolist()))
        flat_y.append(target[1:])
        flat_s.append(scores[1:steps])
    y, s = np.concatenate(flat_y), np.concatenate(flat_s)
    out = timestep_metrics(records, _cfg(resamples=50))
    for c in range(3):
        assert out[f"step_auroc/label_{c}"] == pytest.approx(skm.roc_auc_score(y == c, s[:, c]))
        assert out[f"step_auprc/label_{c}"] == pytest.approx(skm.average_precision_score(y == c, s[:, c]))
    assert out["step_accuracy"] == pytest.approx(skm.accuracy_score(y, s.argmax(1)))
    assert out["n_steps"] == len(y) + 8 and out["step_auroc/macro/ci_low"] <= out["step_auroc/macro"]
    short = [PredictionRecord("s0", "g", "events", {"scores": [[0.1, 0.9]]}, [0, 1])]
    with pytest.raises(PredictionError, match="1 scored time steps for 2 target steps"):
        timestep_metrics(short, _cfg())


def test_timestep_metrics_multilabel_targets_with_nan():
    records = [
        PredictionRecord("a", "g1", "t", {"scores": [[0.9, 0.2], [0.1, 0.7], [0.8, 0.3]]}, [[1.0, 0.0], [0.0, 1.0], [math.nan, 0.0]]),
        PredictionRecord("b", "g2", "t", {"scores": [[0.3, 0.6], [0.7, 0.1]]}, [[0.0, 1.0], [1.0, 0.0]]),
    ]
    out = timestep_metrics(records, _cfg())
    assert out["step_auroc/label_0"] == pytest.approx(skm.roc_auc_score([1, 0, 0, 1], [0.9, 0.1, 0.3, 0.7]))
    assert out["step_auroc/label_1"] == pytest.approx(skm.roc_auc_score([0, 1, 0, 1, 0], [0.2, 0.7, 0.3, 0.6, 0.1]))
    assert "step_accuracy" not in out


class _Targets(torch.utils.data.Dataset):
    def __init__(self, y):
        self.y = y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        from mmapps.data import Sample

        return Sample(f"s{i}", "g", {}, {"findings": torch.tensor(self.y[i])})


def test_pos_weight_auto_counts_the_training_split_and_weights_the_bce():
    y = np.array([[1, 0, np.nan], [0, 0, 1], [0, 1, 1], [0, 0, 0], [0, 0, 1]], dtype=np.float32)
    loss = AutoPosWeightBCE(_cfg(), _Targets(y), task="findings")
    assert loss.pos_weight == pytest.approx([4.0, 4.0, 1.0])  # neg/pos: 4/1, 4/1, 1/3 clamped to 1
    logits, targets = torch.randn(4, 3), torch.tensor([[1.0, 0, 1], [0, 1, 0], [0, 0, 1], [1, 1, 0]])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, pos_weight=torch.tensor([4.0, 4.0, 1.0]))
    assert loss(logits, targets) == pytest.approx(float(expected), rel=1e-6)
    assert MultiLabelBCE(_cfg(), _Targets(y), task="findings").pos_weight is None  # default none
    assert MultiLabelBCE(_cfg(pos_weight={"findings": "auto"}), _Targets(y)).pos_weight == pytest.approx([4.0, 4.0, 1.0])
    assert AutoPosWeightBCE(_cfg(pos_weight=[2, 1, 1]), _Targets(y), task="findings").pos_weight == [2.0, 1.0, 1.0]
    with pytest.raises(ConfigError, match=r"data.options.pos_weight: found 'often'"):
        MultiLabelBCE(_cfg(pos_weight="often"), _Targets(y), task="findings")


def test_pos_weight_fast_path_reads_no_sample_and_agrees_with_the_medical_rule():
    from mmapps_domains.medical.losses import pos_weight_from_targets as medical_rule

    from mmapps.tasks.pos_weight import pos_weight_from_targets

    class Indexed(_Targets):
        def task_targets(self, task):
            assert task == "findings"
            return self.y

        def __getitem__(self, i):
            raise AssertionError("the fast path must not load samples")

    rng = np.random.default_rng(0)
    y = (rng.random((200, 4)) < [0.02, 0.3, 0.7, 0.0]).astype(np.float32)
    y[rng.random(y.shape) < 0.1] = np.nan
    loss = AutoPosWeightBCE(_cfg(), Indexed(y), task="findings")
    assert loss.pos_weight == pytest.approx(pos_weight_from_targets(y)) and loss.pos_weight == pytest.approx(medical_rule(y))
    assert loss.pos_weight[0] > 10 and loss.pos_weight[2] == 1.0
