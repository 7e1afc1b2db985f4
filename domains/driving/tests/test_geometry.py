"""Frames and boxes on hand-made cases."""

import math

import numpy as np
import torch

from mmapps_domains.driving.geometry import (
    box_corners_lidar, boxes_camera_to_lidar, boxes_lidar_to_camera, boxes_to_image_boxes, fov_mask,
    observation_angle, points_in_boxes, project_to_image, range_mask, rect_to_velo, velo_to_rect,
)

# An ideal rig: camera axes = LiDAR axes permuted (x_cam = -y_velo, y_cam = -z_velo, z_cam = x_velo).
TR = torch.tensor([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0]], dtype=torch.float64)
R0 = torch.eye(3, dtype=torch.float64)
P2 = torch.tensor([[100, 0, 50, 0], [0, 100, 40, 0], [0, 0, 1, 0]], dtype=torch.float64)


def test_velo_rect_image():
    p = torch.tensor([[10.0, 2.0, -1.0]], dtype=torch.float64)
    rect = velo_to_rect(p, R0, TR)
    torch.testing.assert_close(rect, torch.tensor([[-2.0, 1.0, 10.0]], dtype=torch.float64))
    torch.testing.assert_close(rect_to_velo(rect, R0, TR), p)
    uv, depth = project_to_image(rect, P2)
    torch.testing.assert_close(uv, torch.tensor([[50 - 20.0, 40 + 10.0]], dtype=torch.float64))
    assert depth.item() == 10.0
    p2_velo = P2 @ torch.cat([TR, torch.tensor([[0, 0, 0, 1.0]], dtype=torch.float64)])
    assert fov_mask(torch.tensor([[10.0, 2, -1], [-10, 0, 0], [10, 20, 0]], dtype=torch.float64), p2_velo, (80, 100)).tolist() == [True, False, False]


def test_box_conversion_round_trip():
    cam = torch.tensor([[1.0, 1.5, 20.0, 1.5, 1.6, 4.0, 0.3]], dtype=torch.float64)
    lidar = boxes_camera_to_lidar(cam, R0, TR)
    # bottom (y=1.5 down) -> lidar z = -1.5, centre z = -1.5 + h/2
    torch.testing.assert_close(lidar[0, :3], torch.tensor([20.0, -1.0, -0.75], dtype=torch.float64))
    torch.testing.assert_close(lidar[0, 3:6], torch.tensor([4.0, 1.6, 1.5], dtype=torch.float64))
    assert math.isclose(lidar[0, 6].item(), -0.3 - math.pi / 2)
    torch.testing.assert_close(boxes_lidar_to_camera(lidar, R0, TR), cam)


def test_corners_and_points_in_box():
    box = torch.tensor([[0.0, 0, 0, 4, 2, 2, math.pi / 2]])
    corners = box_corners_lidar(box)[0]
    assert torch.allclose(corners[:, 0].abs().max(), torch.tensor(1.0), atol=1e-6)  # rotated: l along y
    assert torch.allclose(corners[:, 1].abs().max(), torch.tensor(2.0), atol=1e-6)
    pts = torch.tensor([[0.0, 1.9, 0.0], [1.9, 0, 0], [0, 0, 1.1], [0.9, -1.9, -0.9]])
    assert points_in_boxes(pts, box)[:, 0].tolist() == [True, False, False, True]
    assert range_mask(pts, (0, -2, -1, 1, 2, 1)).tolist() == [True, False, False, True]


def test_image_box_and_alpha():
    # a 2 m cube straight ahead at 10 m, facing the camera: u spans 50 +- 100*1/(10-1) at the near face
    cam = torch.tensor([[0.0, 1.0, 10.0, 2.0, 2.0, 2.0, 0.0]], dtype=torch.float64)
    box = boxes_to_image_boxes(cam, P2)[0]
    torch.testing.assert_close(box, torch.tensor([50 - 100 / 9, 40 - 100 / 9, 50 + 100 / 9, 40 + 100 / 9], dtype=torch.float64))
    assert math.isclose(observation_angle(cam).item(), 0.0, abs_tol=1e-9)
    side = torch.tensor([[4.0, 1.0, 10.0, 2, 2, 2, 0.0]], dtype=torch.float64)
    assert math.isclose(observation_angle(side).item(), -math.atan2(4, 10))
    clipped = boxes_to_image_boxes(side, P2, image_size=(80, 100))[0]
    assert clipped[2].item() == 99 and np.isclose(clipped[0].item(), 50 + 100 * 3 / 11)
