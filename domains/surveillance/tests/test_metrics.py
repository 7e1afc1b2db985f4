"""Metrics against scikit-learn and hand-worked cases; losses on tiny tensors."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score

from mmapps.evaluation.records import PredictionRecord
from mmapps_domains.surveillance.alarms import ClipScores, alarm_metrics, threshold_for_recall
from mmapps_domains.surveillance.events import TimedSegment, detection_ap, interpolated_ap, scores_to_segments, tiou
from mmapps_domains.surveillance.losses import mil_ranking, window_bce
from mmapps_domains.surveillance.metrics import events_metrics, expand_to_frames, frame_labels


def record(clip: str, scores: list, segments: list, duration: float, fps: float = 4.0) -> PredictionRecord:
    meta = {"fps": fps, "window_s": 1.0, "duration": duration, "segments": segments,
            "clip_labels": sorted({s[2] for s in segments}), "classes": ["fight", "fall"], "window_starts": list(range(len(scores)))}
    return PredictionRecord(clip, clip, "events", {"scores": scores, "window_s": 1.0}, None, meta)


def test_segments_and_tiou_by_hand() -> None:
    segs = scores_to_segments("c", [0.1, 0.7, 0.2, 0.8, 0.1, 0.1, 0.9], 1.0, 0.5, merge_gap=1)
    assert segs == [TimedSegment("c", 1.0, 4.0, 0.8), TimedSegment("c", 6.0, 7.0, 0.9)]
    assert scores_to_segments("c", [0.7, 0.2, 0.8], 1.0, 0.5, merge_gap=0) == [TimedSegment("c", 0, 1, 0.7), TimedSegment("c", 2, 3, 0.8)]
    assert tiou(TimedSegment("c", 0, 2), TimedSegment("c", 1, 3)) == pytest.approx(1 / 3)


def test_detection_ap_hand_worked() -> None:
    gts = [TimedSegment("a", 0, 4), TimedSegment("b", 2, 6)]
    dets = [TimedSegment("a", 0, 4, 0.9), TimedSegment("a", 0.5, 4, 0.8), TimedSegment("b", 10, 12, 0.7), TimedSegment("b", 2, 5, 0.6)]
    # ranked: TP (a), FP (a again: gt already matched), FP (b, no overlap), TP (b, tIoU 0.75)
    # precision 1, 1/2, 1/3, 1/2 at recall 0.5, 0.5, 0.5, 1 -> envelope AP = 0.5 * 1 + 0.5 * 0.5
    assert detection_ap(dets, gts, 0.5) == pytest.approx(0.75)
    assert detection_ap(dets, gts, 0.8) == pytest.approx(0.5)  # b's match (0.75) fails: recall stays 0.5
    assert math.isnan(detection_ap(dets, [], 0.5))
    assert interpolated_ap(np.array([1.0, 0.5]), np.array([0.5, 1.0])) == pytest.approx(0.75)


def test_frame_metrics_equal_sklearn_on_concatenated_frames() -> None:
    rng = np.random.default_rng(1)
    records = [
        record("a", rng.uniform(size=(6, 2)).tolist(), [[1.5, 3.0, "fight"]], 5.5),
        record("b", rng.uniform(size=(4, 2)).tolist(), [], 4.0),
        record("c", rng.uniform(size=(5, 2)).tolist(), [[0.0, 2.0, "fall"], [4.25, 5.0, "fight"]], 5.0),
    ]
    ys, ss = [], []
    for r in records:
        m = r.meta
        ys.append(frame_labels(m["segments"], m["fps"], m["duration"]))
        ss.append(expand_to_frames(np.asarray(r.prediction["scores"]).max(1), 1.0, m["fps"], m["duration"]))
    y, s = np.concatenate(ys), np.concatenate(ss)
    assert y.size == 22 + 16 + 20
    assert list(ys[0][:14]) == [0] * 6 + [1] * 6 + [0] * 2  # frames at 1.5 .. 2.75 s
    cfg = SimpleNamespace(eval=SimpleNamespace(options={}, bootstrap_resamples=50, ci_level=0.95), data=SimpleNamespace(options={"classes": ["fight", "fall"]}))
    out = events_metrics(records, cfg)
    assert out["frame/auc"] == pytest.approx(roc_auc_score(y, s))
    assert out["frame/ap"] == pytest.approx(average_precision_score(y, s))
    p, rc, _ = precision_recall_curve(y, s)
    assert out["frame/ap_xd"] == pytest.approx(auc(rc, p))
    assert out["frame/auc/ci_low"] <= out["frame/auc"] <= out["frame/auc/ci_high"]
    assert {"event/map@0.1", "event/map@0.5", "alarm/false_alarms_per_hour"} <= set(out)


def test_alarm_metrics_hand_worked() -> None:
    clips = [
        ClipScores("a", np.array([0.1, 0.9, 0.8, 0.1, 0.1, 0.7, 0.1, 0.1]), 1.0, 8.0, [TimedSegment("a", 0.5, 3.0)]),
        ClipScores("b", np.array([0.2, 0.1, 0.3, 0.6]), 1.0, 4.0, [TimedSegment("b", 1.0, 3.0)]),
    ]
    # per-event max window scores: a -> 0.9, b -> 0.3; 90 % recall of 2 events needs both -> 0.3
    assert threshold_for_recall(clips, 0.9) == pytest.approx(0.3)
    assert threshold_for_recall(clips, 0.5) == pytest.approx(0.9)
    out = alarm_metrics(clips, 0.5)
    # alerts at 0.5: a [1,3) (hit), a [5,6) (false), b [3,4) (false: event ends at 3) -> 2 false in 12 s
    assert out["alarm/false_alarms_per_hour"] == pytest.approx(2 / (12 / 3600))
    assert out["alarm/miss_rate"] == pytest.approx(0.5)
    assert out["alarm/median_delay_s"] == pytest.approx(1.5)  # first alert window [1, 2) ends 1.5 s after 0.5


def test_losses() -> None:
    logits = torch.zeros(2, 3, 1, requires_grad=True)
    targets = torch.tensor([[[1.0], [0.0], [float("nan")]], [[float("nan")]] * 3])
    batch = SimpleNamespace(targets={"clip": torch.tensor([[1.0], [0.0]])}, meta=[{"window_starts": [0, 1, 2]}] * 2)
    assert window_bce(logits, targets, batch).item() == pytest.approx(math.log(2))
    assert mil_ranking(logits, targets, batch).item() == 0.0  # one weak clip only: no pair
    weak = torch.full((2, 3, 1), float("nan"))
    s = torch.tensor([[[2.0], [0.0], [0.0]], [[0.0], [1.0], [0.0]]], requires_grad=True)
    loss = mil_ranking(s, weak, batch, smooth=0.0, sparse=0.0)
    expected = 1.0 - torch.sigmoid(torch.tensor(2.0)) + torch.sigmoid(torch.tensor(1.0))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert s.grad[0, 0, 0] < 0 and s.grad[1, 1, 0] > 0


def test_detection_ap_ties_do_not_depend_on_input_order() -> None:
    """Tied scores are ranked by (score, clip id, start): shuffling the input never changes AP."""
    gts = [TimedSegment("a", 0, 2), TimedSegment("b", 0, 2), TimedSegment("c", 4, 6)]
    dets = [TimedSegment("b", 10, 12, 0.5), TimedSegment("a", 0, 2, 0.5), TimedSegment("c", 4, 6, 0.5), TimedSegment("b", 0, 2, 0.5), TimedSegment("a", 7, 9, 0.9)]
    # ranked: a[7,9) FP (0.9); then the 0.5 ties by clip, start: a[0,2) TP, b[0,2) TP, b[10,12) FP, c[4,6) TP
    # precision 0, 1/2, 2/3, 2/4, 3/5 at recall 0, 1/3, 2/3, 2/3, 1 -> envelope AP = 1/3 * 2/3 + 1/3 * 2/3 + 1/3 * 3/5
    expected = (2 / 3 + 2 / 3 + 3 / 5) / 3
    rng = np.random.default_rng(0)
    values = set()
    for _ in range(30):
        order = rng.permutation(len(dets))
        gt_order = rng.permutation(len(gts))
        values.add(round(detection_ap([dets[i] for i in order], [gts[i] for i in gt_order], 0.5), 12))
    assert values == {round(expected, 12)}
    # the input-order (stable sort) ranking this replaced gives another AP for some orders
    stable = {round(_stable_ap([dets[i] for i in rng.permutation(len(dets))], gts), 12) for _ in range(30)}
    assert len(stable) > 1


def _stable_ap(dets: list, gts: list) -> float:
    order = sorted(dets, key=lambda d: -d.score)
    matched, tp = set(), []
    for det in order:
        hit = next((j for j, gt in enumerate(gts) if gt.clip == det.clip and j not in matched and tiou(det, gt) >= 0.5), None)
        tp.append(hit is not None)
        if hit is not None:
            matched.add(hit)
    cum = np.cumsum(tp)
    return interpolated_ap(cum / np.arange(1, len(tp) + 1), cum / len(gts))
