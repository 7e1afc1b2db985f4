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


def _driving_records(rng: np.random.Generator, n: int) -> list[PredictionRecord]:
    """KITTI frames: cars (some hard, some DontCare, a pedestrian) and noisy detections with false positives."""
    records = []
    for i in range(n):
        k = int(rng.integers(1, 5))
        names = ["Car"] * k + (["Pedestrian"] if i % 2 else []) + (["DontCare"] if i % 3 == 0 else [])
        m = len(names)
        loc = np.c_[rng.uniform(-10, 10, m), np.full(m, 1.6), rng.uniform(6, 40, m)]
        dims = np.c_[np.full(m, 1.5), np.full(m, 1.6), np.full(m, 3.9)]  # h, w, l
        top = rng.uniform(150, 180, m)
        bbox = np.c_[rng.uniform(100, 900, m), top, np.zeros(m), top + rng.choice([20.0, 45.0], m)]
        bbox[:, 2] = bbox[:, 0] + 60
        gt = {"name": names, "truncated": rng.choice([0.0, 0.2, 0.6], m).tolist(), "occluded": rng.integers(0, 3, m).tolist(),
              "alpha": rng.uniform(-3, 3, m).tolist(), "bbox": bbox.tolist(), "dimensions": dims.tolist(), "location": loc.tolist(),
              "rotation_y": rng.uniform(-3, 3, m).tolist()}
        keep = [j for j in range(m) if names[j] != "DontCare" and rng.random() < 0.8]
        fp = int(rng.integers(0, 3))
        d_loc = np.r_[loc[keep] + rng.normal(0, 0.3, (len(keep), 3)), np.c_[rng.uniform(-10, 10, fp), np.full(fp, 1.6), rng.uniform(6, 40, fp)]]
        d_rot = np.r_[np.asarray(gt["rotation_y"])[keep] + rng.normal(0, 0.1, len(keep)), rng.uniform(-3, 3, fp)]
        d_dims = np.r_[dims[keep], np.tile([1.5, 1.6, 3.9], (fp, 1))]
        cam = np.c_[d_loc, d_dims[:, 1], d_dims[:, 2], d_dims[:, 0], d_rot]  # dimensions = cam[:, [5, 3, 4]]
        d_bbox = np.r_[bbox[keep], np.tile([400.0, 160.0, 460.0, 205.0], (fp, 1))]
        pred = {"name": [names[j] for j in keep] + ["Car"] * fp, "boxes_camera": cam.tolist(), "alpha": rng.uniform(-3, 3, len(cam)).tolist(),
                "bbox": d_bbox.tolist(), "score": rng.random(len(cam)).round(2).tolist()}
        records.append(PredictionRecord(f"f{i}", f"f{i}", "objects", pred, {"kitti": gt}, {}))
    return records


@pytest.mark.parametrize("domain_name", ["medical", "surveillance", "driving"])
def test_bootstrap_metric_equals_the_full_metrics_on_resamples(domain_name: str) -> None:
    domain = get_domain(domain_name)
    task = domain.primary_task
    assert task.bootstrap_metric is not None
    rng = np.random.default_rng(3)
    records = {"medical": lambda: _medical_records(rng, 60, len(task.labels)), "surveillance": lambda: _surveillance_records(rng, 40, len(task.labels)),
               "driving": lambda: _driving_records(rng, 25)}[domain_name]()
    full = resolve(task.metrics)
    cfg = resolve_config(domain, "smoke", overrides=["eval.bootstrap_resamples=0"])
    prepared = resolve(task.bootstrap_metric)(records, cfg)
    values = set()
    for k in range(6):
        rows = np.arange(len(records)) if k == 0 else rng.integers(0, len(records), len(records))
        expected = full([records[i] for i in rows], cfg)[task.primary_metric]
        assert prepared(rows) == pytest.approx(expected, abs=1e-12)
        values.add(round(expected, 9))
    assert len(values) > 1 and all(0.0 < v < 1.0 for v in values)  # resamples really differ; the metric is not degenerate


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

    fast.prepare = lambda records: resolve(task.bootstrap_metric)(records, cfg)  # type: ignore[attr-defined]
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
    check_bootstrap_metric(domain, task, records, right, cfg)
    with pytest.raises(ContractError, match="bootstrap_metric gives"):
        check_bootstrap_metric(domain, task, records, right + 0.01, cfg)


@pytest.mark.parametrize("domain_name", ["medical", "driving"])
def test_export_paired_drop_fast_path_equals_the_full_metrics(domain_name: str, monkeypatch) -> None:
    from mmapps.export import drop

    domain = get_domain(domain_name)
    task = domain.primary_task
    rng = np.random.default_rng(6)
    make = (lambda: _medical_records(rng, 50, len(task.labels))) if domain_name == "medical" else (lambda: _driving_records(rng, 20))
    ref, got = make(), make()
    for r_got, r_ref in zip(got, ref):  # the same samples, another model's predictions
        r_got.target, r_got.sample_id, r_got.group_id = r_ref.target, r_ref.sample_id, r_ref.group_id
    cfg = resolve_config(domain, "smoke", overrides=["eval.bootstrap_resamples=0"])
    fast = drop.paired_drop(domain, cfg, {task.name: ref}, {task.name: got}, resamples=25)
    monkeypatch.setattr(drop, "_prepared", lambda *args: None)
    slow = drop.paired_drop(domain, cfg, {task.name: ref}, {task.name: got}, resamples=25)
    assert fast["resamples"] == slow["resamples"] > 0
    for key in ("reference", "value", "drop", "drop_ci_low", "drop_ci_high"):
        assert fast[key] == pytest.approx(slow[key], abs=1e-12), key


def test_driving_test_metrics_carry_the_primary_interval_of_the_full_evaluation() -> None:
    """With resamples asked for, `detection_metrics` writes the primary metric's group-bootstrap interval, equal to
    `bootstrap_ci` over the full KITTI evaluation of each resample (the oracle, slow: 30 resamples)."""
    from mmapps.metrics import bootstrap_ci

    domain = get_domain("driving")
    task = domain.primary_task
    records = _driving_records(np.random.default_rng(3), 16)
    full = resolve(task.metrics)
    fast_cfg = resolve_config(domain, "smoke", overrides=["eval.bootstrap_resamples=30"])
    got = full(records, fast_cfg)
    slow_cfg = resolve_config(domain, "smoke", overrides=["eval.bootstrap_resamples=0"])
    assert f"{task.primary_metric}/ci_low" not in full(records, slow_cfg)  # per-epoch validation: no interval
    oracle = bootstrap_ci(lambda rows: full([records[i] for i in rows], slow_cfg)[task.primary_metric], [np.arange(len(records))],
                          groups=np.array([r.group_id for r in records]), n_resamples=30, seed=fast_cfg.seed)
    assert got[f"{task.primary_metric}/ci_low"] == pytest.approx(oracle.low, abs=1e-12)
    assert got[f"{task.primary_metric}/ci_high"] == pytest.approx(oracle.high, abs=1e-12)
    assert got[f"{task.primary_metric}/ci_low"] <= got[task.primary_metric] <= got[f"{task.primary_metric}/ci_high"]
