"""IoU precision modes: exact float64 (default) and the python devkits' float32, at the 0.5 boundary."""

import math

import numpy as np
import pytest
import torch
from mmapps_domains.driving.evaluation import frame_overlaps, kitti_eval
from mmapps_domains.driving.iou import camera_bev_iou, camera_iou_3d
from mmapps_domains.driving.iou_devkit import camera_bev_iou_f32, camera_iou_3d_f32

GT_BOX = [3.17, 1.6, 41.83, 1.7, 0.6, 0.8, 0.31]  # a pedestrian 42 m ahead: x, y, z, h, w, l, ry
SHIFT = 0.26665866666666665  # along its length: exact BEV IoU 0.5000112, float32 devkit 0.4999919


def anno(box, score=None, name="Pedestrian"):
    x, y, z, h, w, l, ry = box
    return {"name": np.array([name], dtype=object), "truncated": np.zeros(1), "occluded": np.zeros(1, dtype=np.int64), "alpha": np.zeros(1),
            "bbox": np.array([[600.0, 150.0, 640.0, 230.0]]), "dimensions": np.array([[l, h, w]]), "location": np.array([[x, y, z]]),
            "rotation_y": np.array([ry]), "score": np.array([0.0 if score is None else score])}


def shifted_box() -> list[float]:
    box = list(GT_BOX)
    box[0] += SHIFT * math.cos(GT_BOX[6])
    box[2] -= SHIFT * math.sin(GT_BOX[6])
    return box


def test_float32_agrees_with_exact_iou_away_from_rounding():
    rng = np.random.default_rng(0)
    def boxes(n):
        return np.concatenate([rng.uniform(-3, 3, (n, 1)), rng.uniform(1, 2, (n, 1)), rng.uniform(20, 24, (n, 1)),
                               rng.uniform(0.5, 4, (n, 3)), rng.uniform(-3.2, 3.2, (n, 1))], 1)
    a, b = boxes(40), boxes(30)
    exact = camera_bev_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    assert (exact > 0.05).sum() > 50  # overlapping pairs are exercised
    np.testing.assert_allclose(camera_bev_iou_f32(a, b), exact, atol=1e-5)
    np.testing.assert_allclose(camera_iou_3d_f32(a, b), camera_iou_3d(torch.from_numpy(a), torch.from_numpy(b)).numpy(), atol=1e-5)
    assert camera_bev_iou_f32(a[:3], a[:3]).diagonal() == pytest.approx([1, 1, 1])


def test_a_pair_straddling_half_is_classified_differently():
    gt, dt = anno(GT_BOX), anno(shifted_box(), score=0.9)
    exact = frame_overlaps(dt, gt, "bev")[0, 0]
    devkit = frame_overlaps(dt, gt, "bev", "float32")[0, 0]
    assert exact > 0.5 > devkit and exact - devkit < 1e-4
    ap64 = kitti_eval([gt], [dt], ["Pedestrian"]).ap
    ap32 = kitti_eval([gt], [dt], ["Pedestrian"], iou_precision="float32").ap
    # one object found: precision 1 at the single recall point that R11 counts at index 0
    assert ap64["bev_ap_r11/Pedestrian/easy"] == pytest.approx(1 / 11) and ap32["bev_ap_r11/Pedestrian/easy"] == 0.0
    with pytest.raises(ValueError, match="iou_precision"):
        frame_overlaps(dt, gt, "bev", "float16")


def test_ap_r40_caps_at_n_minus_one_over_40():
    for n in (10, 40):
        gts = [anno([3.0 * k - 30, 1.6, 20.0 + k, 1.7, 0.6, 0.8, 0.0]) for k in range(n)]
        dts = [anno([3.0 * k - 30, 1.6, 20.0 + k, 1.7, 0.6, 0.8, 0.0], score=0.5 + k / 100) for k in range(n)]
        ap = kitti_eval(gts, dts, ["Pedestrian"]).ap
        assert ap["bev_ap_r40/Pedestrian/easy"] == pytest.approx((n - 1) / 40)
