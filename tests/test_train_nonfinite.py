"""Metrics refuse non-finite predictions (a NaN model scored AUROC 0.5 instead of failing), naming the samples."""

from __future__ import annotations

import math

import pytest

from mmapps.errors import PredictionError
from mmapps.evaluation.records import PredictionRecord
from mmapps.tasks.metrics import check_finite_predictions, multiclass_metrics
from mmapps.workflows.resolve import resolve_config


def _records(scores):
    return [PredictionRecord(f"s{i}", f"g{i}", "shape", {"scores": s}, i % 2) for i, s in enumerate(scores)]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_compute_metrics_refuses_non_finite_scores_naming_the_samples(shapes_domain, bad):
    from mmapps.train.trainer import compute_metrics

    cfg = resolve_config(shapes_domain, "smoke", overrides=["eval.bootstrap_resamples=0"])
    scores = [[0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1], [bad, 0.0, 0.0, 0.0], [0.25, 0.25, bad, 0.25]]
    with pytest.raises(PredictionError, match=r"task 'shape': the model predicted NaN or infinite values for 2 of 4 samples \(s2, s3\)"):
        compute_metrics(shapes_domain, {"shape": _records(scores)}, cfg)


def test_finite_scores_give_metrics(shapes_domain):
    from mmapps.train.trainer import compute_metrics

    cfg = resolve_config(shapes_domain, "smoke", overrides=["eval.bootstrap_resamples=0"])
    scores = [[0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1], [0.6, 0.2, 0.1, 0.1], [0.2, 0.6, 0.1, 0.1]]
    metrics = compute_metrics(shapes_domain, {"shape": _records(scores)}, cfg)
    assert metrics["accuracy"] == 1.0
    assert multiclass_metrics(_records(scores), cfg)["accuracy"] == 1.0


def test_nested_predictions_are_checked_everywhere():
    boxes = [PredictionRecord("f1", "f1", "objects", {"boxes": [[1.0, 2.0, 3.0]], "scores": [0.9], "labels": ["Car"]}),
             PredictionRecord("f2", "f2", "objects", {"boxes": [[1.0, math.nan, 3.0]], "scores": [0.8], "labels": ["Car"]}),
             PredictionRecord("f3", "f3", "objects", {"segments": [{"start": 0.0, "end": math.inf}], "name": "x"})]
    with pytest.raises(PredictionError, match=r"2 of 3 samples \(f2, f3\)"):
        check_finite_predictions(boxes, "objects")
    check_finite_predictions(boxes[:1], "objects")
    many = [PredictionRecord(f"s{i}", "g", "t", {"scores": [math.nan]}) for i in range(8)]
    with pytest.raises(PredictionError, match=r"\(s0, s1, s2, s3, s4 and 3 more\)"):
        check_finite_predictions(many, "t")
