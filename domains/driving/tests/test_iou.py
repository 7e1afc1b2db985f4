"""Rotated IoU against hand-computed cases and shapely; rotated NMS."""

import math

import numpy as np
import pytest
import torch
from shapely.geometry import Polygon

from mmapps_domains.driving.geometry import bev_corners
from mmapps_domains.driving.iou import bev_iou, camera_bev_iou, camera_iou_3d, iou_3d, nms_bev


def test_hand_cases():
    a = torch.tensor([[0, 0, 0, 2, 2, 2, 0.0]], dtype=torch.float64)
    cases = {
        (1, 0, 0, 2, 2, 2, 0.0): 1 / 3,  # half overlap: 2 / (4 + 4 - 2)
        (0, 0, 0, 2, 2, 2, math.pi / 4): 8 * (math.sqrt(2) - 1) / (8 - 8 * (math.sqrt(2) - 1)),
        (3, 0, 0, 2, 2, 2, 0.3): 0.0,
        (0, 0, 0, 2, 2, 2, math.pi / 2): 1.0,
        (0, 0, 0, 1, 1, 1, 0.0): 0.25,
    }
    for box, expected in cases.items():
        assert bev_iou(a, torch.tensor([box], dtype=torch.float64)).item() == pytest.approx(expected, abs=1e-9)
    b = torch.tensor([[1, 0, 1, 2, 2, 2, 0.0]], dtype=torch.float64)
    assert iou_3d(a, b).item() == pytest.approx(2.0 / (16 - 2.0))  # overlap 1 x 2 x 1 m of two 8 m^3 boxes


def test_against_shapely():
    rng = np.random.default_rng(0)
    boxes = torch.tensor(np.concatenate([rng.uniform(-2, 2, (40, 3)), rng.uniform(0.5, 4, (40, 3)), rng.uniform(-3.2, 3.2, (40, 1))], 1))
    ours = bev_iou(boxes, boxes[:20]).numpy()
    polys = [Polygon(c) for c in bev_corners(boxes).numpy()]
    ref = np.array([[p.intersection(q).area / p.union(q).area for q in polys[:20]] for p in polys])
    np.testing.assert_allclose(ours, ref, atol=1e-7)


def test_camera_frame_iou_matches_lidar_frame():
    cam = torch.tensor([[0, 1.5, 10, 1.5, 1.6, 4, 0.2], [0.5, 1.4, 10.3, 1.5, 1.6, 4, 0.5]], dtype=torch.float64)
    assert camera_bev_iou(cam, cam).diagonal().tolist() == pytest.approx([1, 1])
    # same boxes expressed in a LiDAR frame (x = z_cam, y = -x_cam, z = -y_cam, heading = -ry - pi/2)
    lidar = torch.stack([cam[:, 2], -cam[:, 0], -cam[:, 1] + cam[:, 3] / 2, cam[:, 5], cam[:, 4], cam[:, 3], -cam[:, 6] - math.pi / 2], 1)
    np.testing.assert_allclose(camera_bev_iou(cam, cam).numpy(), bev_iou(lidar, lidar).numpy(), atol=1e-9)
    np.testing.assert_allclose(camera_iou_3d(cam, cam).numpy(), iou_3d(lidar, lidar).numpy(), atol=1e-9)


def test_nms_bev():
    boxes = torch.tensor([[0, 0, 0, 4, 2, 1.5, 0], [0.2, 0, 0, 4, 2, 1.5, 0.1], [10, 0, 0, 4, 2, 1.5, 0], [0, 0, 0, 4, 2, 1.5, math.pi / 2]])
    scores = torch.tensor([0.9, 0.95, 0.5, 0.8])
    assert nms_bev(boxes, scores, 0.5).tolist() == [1, 3, 2]
    assert nms_bev(boxes, scores, 0.5, max_keep=2).tolist() == [1, 3]
    assert nms_bev(boxes[:0], scores[:0], 0.5).numel() == 0
