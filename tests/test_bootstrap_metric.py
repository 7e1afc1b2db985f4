"""`TaskSpec.bootstrap_metric`: the prepared primary metric equals the task's `metrics` on every resample.

The label-efficiency study's paired bootstrap calls it thousands of times; the oracle is the
domain's own full `metrics` function (sklearn underneath) on the same resampled records.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from mmapps.domain import resolve
from mmapps.evaluation.records import PredictionRecord
from mmapps.plugins import get_domain
from mmapps.workflows.label_efficiency_stats import paired_difference
from mmapps.workflows.resolve import resolve_config


def _surveillance_records(rng: np.random.Generator, n: int, classes: int) -> list[PredictionRecord]:
    records = []
    for i in range(n):
        duration, window_s, fps = float(rng.choice([7.3, 10.0, 12.5])), 1.0, float(rng.choice([10.0, 12.5]))
        windows = int(math.ceil(duration / window_s))
        scores = np.round(rng.random((windows, classes)), 1)  # rounded: ties across windows and clips
        segments = [] if i % 3 == 0 else [[1.2, 3.7, "fight"]] if i % 3 == 1 else [[0.0, 2.0, "fire"], [5.5, 7.0, "fight"]]
        meta = {"fps": fps, "duration": duration, "window_s": window_s, "segments": segments, "clip_labels": sorted({s[2] for s in segments})}
        if i == 5:
            meta["segments"] = []  # an anomalous clip without segments: unlabelled at frame level
        records.append(PredictionRecord(f"c{i}", f"c{i}", "events", {"scores": scores.tolist(), "window_s": window_s, "window_starts": list(range(windows))}, [], meta))
    return records


def _medical_records(rng: np.random.Generator, n: int, labels: int) -> list[PredictionRecord]:
    records = []
    for i in range(n):
        target = [float(v) if v < 2 else None for v in rng.integers(0, 3, labels)]  # None: unlabelled finding
        records.append(PredictionRecord(f"s{i}", f"p{i // 2}", "findings", {"scores": rng.random(labels).round(2).tolist()}, target, {}))
    return records


@pytest.mark.parametrize("domain_name", ["medical", "surveillance"])
def test_bootstrap_metric_equals_the_full_metrics_on_resamples(domain_name: str) -> None:
    domain = get_domain(domain_name)
    task = domain.primary_task
    assert task.bootstrap_metric is not None
    rng = np.random.default_rng(3)
    records = _medical_records(rng, 60, len(task.labels)) if domain_name == "medical" else _surveillance_records(rng, 40, len(task.labels))
    full = resolve(task.metrics)
    cfg = resolve_config(domain, "smoke", overrides=["eval.bootstrap_resamples=0"])
    prepared = resolve(task.bootstrap_metric)(records, None)
    for k in range(6):
        rows = np.arange(len(records)) if k == 0 else rng.integers(0, len(records), len(records))
        expected = full([records[i] for i in rows], cfg)[task.primary_metric]
        assert prepared(rows) == pytest.approx(expected, abs=1e-12)


def test_paired_difference_uses_the_prepared_metric_and_agrees_with_the_slow_path() -> None:
    domain = get_domain("surveillance")
    task = domain.primary_task
    rng = np.random.default_rng(4)
    a, b = _surveillance_records(rng, 30, len(task.labels)), _surveillance_records(rng, 30, len(task.labels))
    for r_b, r_a in zip(b, a):  # same clips and labels, different scores
        r_b.meta, r_b.sample_id, r_b.group_id = r_a.meta, r_a.sample_id, r_a.group_id

    cfg = resolve_config(domain, "smoke", overrides=["eval.bootstrap_resamples=0"])

    def slow(records: list[PredictionRecord]) -> float:
        return resolve(task.metrics)(records, cfg)[task.primary_metric]

    def fast(records: list[PredictionRecord]) -> float:
        return slow(records)

    fast.prepare = lambda records: resolve(task.bootstrap_metric)(records, None)  # type: ignore[attr-defined]
    d_slow, d_fast = paired_difference(slow, [a], [b], 40), paired_difference(fast, [a], [b], 40)
    assert (d_fast.estimate, d_fast.low, d_fast.high) == pytest.approx((d_slow.estimate, d_slow.low, d_slow.high), abs=1e-12)
    assert d_fast.estimate != 0.0


def test_the_plugin_self_test_refuses_a_bootstrap_metric_that_disagrees_with_metrics() -> None:
    from mmapps.testing.errors import ContractError
    from mmapps.testing.steps import check_bootstrap_metric

    domain = get_domain("medical")
    task = domain.primary_task
    records = _medical_records(np.random.default_rng(5), 40, len(task.labels))
    cfg = resolve_config(domain, "smoke", overrides=["eval.bootstrap_resamples=0"])
    right = resolve(task.metrics)(records, cfg)[task.primary_metric]
    check_bootstrap_metric(domain, task, records, right)
    with pytest.raises(ContractError, match="bootstrap_metric gives"):
        check_bootstrap_metric(domain, task, records, right + 0.01)
