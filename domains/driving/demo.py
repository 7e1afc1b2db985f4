"""Writes the synthetic demo dataset in the KITTI object layout.

``root/training/{velodyne,image_2,calib,label_2}/NNNNNN.*`` plus ``root/ImageSets/{train,val,test}.txt``.
Scenes come from `demo_scene`, images from `demo_render`; labels (2D box, truncation, occlusion,
alpha) are derived from the same geometry the evaluation uses. Objects hidden in the image
(under 10 % visible) are written as DontCare regions, as KITTI annotators would.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mmapps_domains.driving.demo_render import render_camera
from mmapps_domains.driving.demo_scene import LidarSpec, Scene, cast_lidar, sample_scene
from mmapps_domains.driving.geometry import boxes_lidar_to_camera, boxes_to_image_boxes, observation_angle
from mmapps_domains.driving.kitti import Calibration, KittiObject, write_calib, write_image, write_label
from mmapps_domains.driving.points import write_velodyne
from mmapps_domains.driving.splits import seeded_split, write_split_file

IMAGE_SIZE = (375, 1242)


def kitti_like_calibration() -> Calibration:
    """The calibration of a KITTI recording day (2011-09-26), as found in the object benchmark files."""
    k = np.array([[721.5377, 0.0, 609.5593], [0.0, 721.5377, 172.854], [0.0, 0.0, 1.0]])

    def p(tx: float, ty: float, tz: float) -> np.ndarray:
        return np.concatenate([k, np.array([[tx], [ty], [tz]])], 1)

    return Calibration(
        P={"P0": p(0, 0, 0), "P1": p(-387.5744, 0, 0), "P2": p(44.85728, 0.2163791, 0.002745884), "P3": p(-339.5242, 2.199936, 0.002729905)},
        R0_rect=np.array([[0.9999239, 0.00983776, -0.007445048], [-0.009869795, 0.9999421, -0.004278459], [0.007402527, 0.004351614, 0.9999631]]),
        Tr_velo_to_cam=np.array([[0.007533745, -0.9999714, -0.0006166020, -0.004069766],
                                 [0.01480249, 0.0007280733, -0.9998902, -0.07631618],
                                 [0.9998621, 0.007523790, 0.01480755, -0.2717806]]),
        Tr_imu_to_velo=np.array([[0.9999976, 0.0007553071, -0.002035826, -0.8086759],
                                 [-0.0007854027, 0.9998898, -0.01482298, 0.3195559],
                                 [0.002024406, 0.01482454, 0.9998881, -0.7997231]]),
    )


def label_scene(scene: Scene, calib: Calibration, visible: np.ndarray, full: np.ndarray, image_size: tuple[int, int]) -> list[KittiObject]:
    """KITTI labels of a scene: camera boxes, 2D boxes, truncation and occlusion from the geometry."""
    if not scene.objects:
        return []
    boxes = torch.from_numpy(np.stack([o.box for o in scene.objects]))
    r0, tr = torch.from_numpy(calib.R0_rect), torch.from_numpy(calib.Tr_velo_to_cam)
    cam = boxes_lidar_to_camera(boxes, r0, tr)
    p2 = torch.from_numpy(calib.P2)
    raw = boxes_to_image_boxes(cam, p2)
    clipped = boxes_to_image_boxes(cam, p2, image_size)
    alpha = observation_angle(cam)
    area = lambda b: ((b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0))  # noqa: E731
    truncation = (1 - area(clipped) / area(raw).clamp(min=1e-6)).clamp(0, 1)
    labels = []
    for i, obj in enumerate(scene.objects):
        seen = visible[i] / max(full[i], 1.0)
        if seen < 0.1:
            labels.append(KittiObject("DontCare", -1, -1, -10, tuple(clipped[i].tolist()), (-1, -1, -1), (-1000, -1000, -1000), -10))
            continue
        occluded = 0 if seen > 0.85 else (1 if seen > 0.5 else 2)
        c = cam[i].tolist()
        labels.append(KittiObject(obj.cls, round(float(truncation[i]), 2), occluded, float(alpha[i]), tuple(clipped[i].tolist()),
                                  (c[3], c[4], c[5]), (c[0], c[1], c[2]), float(c[6])))
    return labels


def write_demo_frame(root: Path, frame_id: str, rng: np.random.Generator, calib: Calibration, spec: LidarSpec) -> int:
    """Simulate and write one frame; returns its number of labelled objects."""
    scene = sample_scene(rng)
    points, _ = cast_lidar(scene, spec, rng)
    rendered = render_camera(scene, calib, IMAGE_SIZE, rng)
    labels = label_scene(scene, calib, rendered.visible_pixels, rendered.full_pixels, IMAGE_SIZE)
    training = root / "training"
    write_velodyne(training / "velodyne" / f"{frame_id}.bin", points)
    write_image(training / "image_2" / f"{frame_id}.png", rendered.image)
    write_calib(training / "calib" / f"{frame_id}.txt", calib)
    write_label(training / "label_2" / f"{frame_id}.txt", labels)
    return len(labels)


def write_demo_data(out: Path, n: int = 200, seed: int = 0) -> Path:
    """Write `n` synthetic frames in KITTI layout under `out` and return the data root.

    Args:
        out: destination folder (created).
        n: number of frames (split 70 / 15 / 15 into ImageSets/train, val, test).
        seed: seeds scenes, sensor noise and the split.

    Returns:
        `out`, to pass as ``data.root``.
    """
    out = Path(out)
    rng = np.random.default_rng(seed)
    calib = kitti_like_calibration()
    spec = LidarSpec()
    ids = [f"{i:06d}" for i in range(n)]
    for frame_id in ids:
        write_demo_frame(out, frame_id, rng, calib, spec)
    split = seeded_split(ids, (0.7, 0.15, 0.15), seed)
    for name, frame_ids in split.items():
        write_split_file(out / "ImageSets" / f"{name}.txt", frame_ids)
    (out / "README.txt").write_text(
        f"Synthetic KITTI-layout demo data written by mmapps (n={n}, seed={seed}).\n"
        "LiDAR: 64-beam spinning sensor, ray cast; camera: rendered through calib/P2.\n"
        "Objects: Car, Pedestrian, Cyclist within 44 m in the camera field of view.\n"
    )
    return out
