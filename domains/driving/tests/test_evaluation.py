"""KITTI evaluation on hand-worked cases."""

import numpy as np
import pytest

from mmapps_domains.driving.evaluation import get_thresholds, image_box_overlap, kitti_eval
from mmapps_domains.driving.kitti import KittiObject, objects_to_arrays, read_label, write_label


def car(x: float, z: float, score: float | None = None, name: str = "Car", occluded: int = 0, bbox=None) -> KittiObject:
    bbox = bbox or (100 + 10 * x, 150, 200 + 10 * x, 200)  # 50 px tall: easy
    return KittiObject(name, 0.0, occluded, 0.0, bbox, (1.5, 1.6, 3.9), (x, 1.6, z), 0.0, score)


def frames(n_frames: int = 10, per_frame: int = 5) -> list[list[KittiObject]]:
    return [[car(6.0 * k - 12, 10.0 + f) for k in range(per_frame)] for f in range(n_frames)]


def detections(gt_frames, score0: float = 0.5) -> list[list[KittiObject]]:
    out, s = [], score0
    for objs in gt_frames:
        row = []
        for o in objs:
            s += 0.001
            row.append(KittiObject(o.type, 0, 0, o.alpha, o.bbox, o.dimensions, o.location, o.rotation_y, s))
        out.append(row)
    return out


def evaluate(gt_frames, dt_frames, classes=("Car",)):
    return kitti_eval([objects_to_arrays(f) for f in gt_frames], [objects_to_arrays(f) for f in dt_frames], classes).ap


def test_perfect_predictions_give_ap_one():
    gt = frames()
    ap = evaluate(gt, detections(gt))
    for metric in ("bbox", "bev", "3d", "aos"):
        for level in ("easy", "moderate", "hard"):
            assert ap[f"{metric}_ap_r40/Car/{level}"] == pytest.approx(1.0)
            assert ap[f"{metric}_ap_r11/Car/{level}"] == pytest.approx(1.0)
    assert ap["num_gt/Car/easy"] == 50


def test_single_false_positive_with_top_score():
    gt = frames(n_frames=8)  # 40 gt: one threshold per true positive
    dt = detections(gt)
    dt[0].append(car(40.0, 60.0, score=0.99))
    ap = evaluate(gt, dt)
    # threshold t keeps t + 1 true positives and the false positive: precision (t+1)/(t+2),
    # interpolated to 40/41 for t < 40; index 40 is never reached with 40 gt
    assert ap["bev_ap_r40/Car/moderate"] == pytest.approx(39 * (40 / 41) / 40)
    assert ap["bev_ap_r11/Car/moderate"] == pytest.approx(10 * (40 / 41) / 11)


def test_dontcare_absorbs_2d_false_positive_and_van_is_ignored():
    gt = frames()
    dt = detections(gt)
    gt[0].append(KittiObject("DontCare", -1, -1, -10, (500, 150, 600, 220), (-1, -1, -1), (-1000, -1000, -1000), -10))
    dt[0].append(car(0.0, 70.0, score=0.99, bbox=(510, 160, 590, 210)))  # inside the DontCare region
    gt[1].append(car(30.0, 40.0, name="Van"))
    dt[1].append(car(30.0, 40.0, score=0.98))  # a Car detection on a Van: neither TP nor FP
    ap = evaluate(gt, dt)
    assert ap["bbox_ap_r40/Car/moderate"] == pytest.approx(1.0)
    assert ap["bev_ap_r40/Car/moderate"] < 1.0  # as in the devkit, DontCare only absorbs 2D detections


def test_difficulty_filters_and_missed_hard_object():
    gt = frames()
    gt[0][0] = car(-12.0, 10.0, occluded=2)  # hard only
    dt = detections(gt)
    dt[0] = dt[0][1:]  # the occluded car is missed
    ap = evaluate(gt, dt)
    assert ap["num_gt/Car/easy"] == 49 and ap["num_gt/Car/hard"] == 50
    assert ap["bev_ap_r40/Car/easy"] == pytest.approx(1.0)
    assert ap["bev_ap_r40/Car/hard"] < 1.0


def test_localisation_below_iou_threshold_counts_as_miss():
    gt = frames()
    dt = detections(gt)
    shifted = dt[0][0]
    x, y, z = shifted.location
    dt[0][0] = KittiObject("Car", 0, 0, 0, shifted.bbox, shifted.dimensions, (x + 0.8, y, z), 0, shifted.score)  # BEV IoU ~0.66
    ap = evaluate(gt, dt)
    assert ap["bbox_ap_r40/Car/moderate"] == pytest.approx(1.0)
    assert ap["bev_ap_r40/Car/moderate"] < 1.0


def test_thresholds_and_overlap_helpers(tmp_path):
    assert get_thresholds(np.array([0.9, 0.5, 0.7]), 4) == [0.9, 0.7, 0.5]
    a = np.array([[0, 0, 10, 10.0]])
    b = np.array([[5, 0, 15, 10.0]])
    assert image_box_overlap(a, b)[0, 0] == pytest.approx(50 / 150)
    assert image_box_overlap(a, b, 0)[0, 0] == pytest.approx(0.5)
    # result files round-trip into the evaluation
    gt = frames(n_frames=10)
    paths = [write_label(tmp_path / f"{i:06d}.txt", d) for i, d in enumerate(detections(gt))]
    assert evaluate(gt, [read_label(p) for p in paths])["3d_ap_r40/Car/moderate"] == pytest.approx(1.0)


def test_all_thresholds_at_once_equals_the_devkit_loop():
    from mmapps_domains.driving.evaluation import compute_statistics, statistics_at_thresholds

    rng = np.random.default_rng(0)
    for _ in range(150):
        n_dt, n_gt = rng.integers(0, 8), rng.integers(0, 6)
        ov = rng.uniform(0, 1, (n_dt, n_gt)) * (rng.random((n_dt, n_gt)) < 0.5)
        ga, da, sc = rng.uniform(-3, 3, n_gt), rng.uniform(-3, 3, n_dt), rng.uniform(0, 1, n_dt)
        a, b = rng.uniform(0, 100, (n_dt, 2)), rng.uniform(0, 100, (n_dt, 2))
        boxes = np.concatenate([np.minimum(a, b), np.maximum(a, b)], 1)
        ig, idt = rng.choice([-1, 0, 1], n_gt), rng.choice([-1, 0, 1], n_dt)
        dc = np.array([[10, 10, 60, 60.0]]) if rng.random() < 0.5 else np.zeros((0, 4))
        thr = np.sort(rng.uniform(0, 1, 5))[::-1]
        for metric in ("bbox", "bev"):
            at_once = statistics_at_thresholds(ov, ga, da, sc, boxes, ig, idt, dc, metric, 0.5, thr, True)
            for t, th in enumerate(thr):
                tp, fp, fn, sim, _ = compute_statistics(ov, ga, da, sc, boxes, ig, idt, dc, metric, 0.5, th, True, True)
                np.testing.assert_allclose(at_once[t], [tp, fp, fn, sim if sim != -1 else 0.0])
