"""Camera images of synthetic scenes, rendered through the same calibration as the labels.

Every pixel is ray traced: the ground (asphalt, lane markings, sidewalks, grass), the sky, and the
boxes of objects and clutter (each box only over the pixels of its projected 2D box). The object-id
buffer of the same z-buffer gives each object's visible fraction, hence the KITTI occlusion level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmapps_domains.driving.demo_scene import SENSOR_HEIGHT, Scene
from mmapps_domains.driving.kitti import Calibration

SKY = np.array([150, 190, 235], dtype=np.float32)


@dataclass
class RenderedFrame:
    """An image (H, W, 3) uint8 and, per labelled object, visible and full pixel counts."""

    image: np.ndarray
    visible_pixels: np.ndarray
    full_pixels: np.ndarray


def _corners(boxes: np.ndarray) -> np.ndarray:
    """(K, 8, 3) corners of LiDAR boxes: bottom face then top face."""
    sx = np.array([1, -1, -1, 1, 1, -1, -1, 1]) / 2
    sy = np.array([1, 1, -1, -1, 1, 1, -1, -1]) / 2
    sz = np.array([-1, -1, -1, -1, 1, 1, 1, 1]) / 2
    lx, ly, lz = sx * boxes[:, 3:4], sy * boxes[:, 4:5], sz * boxes[:, 5:6]
    c, s = np.cos(boxes[:, 6:7]), np.sin(boxes[:, 6:7])
    return np.stack([boxes[:, 0:1] + c * lx - s * ly, boxes[:, 1:2] + s * lx + c * ly, boxes[:, 2:3] + lz], -1)


def _ground(calib: Calibration, height: int, width: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-pixel ground / sky colours (H, W, 3) and ray distances (H, W), camera centre (3,) and rays (H, W, 3) in the LiDAR frame."""
    k = calib.P2[:, :3]
    cam_rect = -np.linalg.solve(k, calib.P2[:, 3])
    to_velo = np.linalg.inv(calib.velo_to_rect())
    origin = to_velo[:3, :3] @ cam_rect + to_velo[:3, 3]
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(k).T @ to_velo[:3, :3].T  # (H, W, 3)
    t = np.where(rays[..., 2] < -1e-6, (-SENSOR_HEIGHT - origin[2]) / np.minimum(rays[..., 2], -1e-6), np.inf)
    hit = np.isfinite(t) & (t < 400)
    t_hit = np.where(hit, t, 400.0)
    x = origin[0] + t_hit * rays[..., 0]
    y = origin[1] + t_hit * rays[..., 1]
    ay = np.abs(y)
    colour = np.empty((height, width, 3), dtype=np.float32)
    colour[:] = (95, 95, 100)
    lane = ((np.abs(ay - 3.5) < 0.07) | (np.abs(y) < 0.07)) & (np.mod(x, 9.0) < 3.0)
    colour[lane | (np.abs(ay - 7.0) < 0.09)] = (235, 235, 230)
    colour[(ay > 7.1) & (ay < 11.5)] = (165, 160, 155)
    colour[ay >= 11.5] = (85, 130, 60)
    colour += rng.normal(0, 6, (height, width, 1)).astype(np.float32)
    fog = np.clip(t_hit / 160.0, 0, 1)[..., None].astype(np.float32)
    sky = SKY[None, None] - (v[..., None] / height * 60).astype(np.float32)
    colour = np.where(hit[..., None], colour * (1 - fog) + SKY * fog, sky).astype(np.float32)
    return colour, np.where(hit, t, np.inf), origin, rays


def _primitive_colours(scene: Scene) -> tuple[np.ndarray, list[tuple[int, int, int]], np.ndarray]:
    boxes, colours, owner = [], [], []
    for i, obj in enumerate(scene.objects):
        base = np.array(obj.colour, dtype=np.float32)
        for j, prim in enumerate(obj.primitives):
            if obj.cls == "Car":
                c = base if j == 0 else (base * 0.3 + np.array([40, 55, 70]) if j == 1 else np.array([20, 20, 20]))
            elif obj.cls == "Pedestrian":
                c = base if j == 0 else np.array([225, 185, 150])
            else:
                c = np.array([25, 25, 25]) if j == 0 else base
            boxes.append(prim)
            colours.append(tuple(int(v) for v in c))
            owner.append(i)
    for prim in scene.clutter:
        boxes.append(prim)
        colours.append((150, 140, 130) if prim[3] > 5 else (105, 105, 110))
        owner.append(-1)
    return np.array(boxes), colours, np.array(owner)


def _slab(origin: np.ndarray, dirs: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entry distance (P,) of rays (P, 3) from `origin` into one oriented box (inf when missed) and the hit face normal (P, 3)."""
    c, s = np.cos(box[6]), np.sin(box[6])
    rot = np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]])  # world -> box frame
    o = rot @ (origin - box[:3])
    d = dirs @ rot.T
    d = np.where(np.abs(d) < 1e-12, 1e-12, d)
    half = box[3:6] / 2
    t1, t2 = (-half - o) / d, (half - o) / d
    tnear = np.minimum(t1, t2)
    tmin, tmax = tnear.max(-1), np.maximum(t1, t2).min(-1)
    axis = tnear.argmax(-1)
    normal_local = np.zeros_like(d)
    normal_local[np.arange(len(d)), axis] = -np.sign(d[np.arange(len(d)), axis])
    return np.where((tmax >= tmin) & (tmin > 0), tmin, np.inf), normal_local @ rot


def render_camera(scene: Scene, calib: Calibration, image_size: tuple[int, int], rng: np.random.Generator, scale: float = 0.5) -> RenderedFrame:
    """Render the scene as seen by camera 2 by ray tracing (a z-buffer over boxes and the ground).

    Args:
        image_size: (height, width) of the written image.
        scale: the scene is traced at this fraction of the resolution, then resized (speed).

    Returns:
        `RenderedFrame` with the image and per-object visible / full pixel counts (at the traced resolution).
    """
    from PIL import Image

    out_h, out_w = image_size
    height, width = int(round(out_h * scale)), int(round(out_w * scale))
    p2 = calib.P2.copy()
    p2[:2] *= np.array([[width / out_w], [height / out_h]])
    calib = Calibration(P={**calib.P, "P2": p2}, R0_rect=calib.R0_rect, Tr_velo_to_cam=calib.Tr_velo_to_cam)
    colour, zbuf, origin, rays = _ground(calib, height, width, rng)
    boxes, colours, owner = _primitive_colours(scene)
    n_obj = len(scene.objects)
    full = np.zeros(n_obj)
    id_map = np.full((height, width), -1)
    proj = calib.velo_to_image()
    light = np.array([0.3, 0.4, 0.85])
    corners = _corners(boxes) if len(boxes) else np.zeros((0, 8, 3))
    object_mask: dict[int, np.ndarray] = {}
    for k in range(len(boxes)):  # loop over primitives; each traces only the pixels of its projected 2D box
        uvw = corners[k] @ proj[:, :3].T + proj[:, 3]
        if (uvw[:, 2] < 0.3).any():
            u0, v0, u1, v1 = 0, 0, width, height
        else:
            uv = uvw[:, :2] / uvw[:, 2:]
            u0, v0 = max(int(uv[:, 0].min()) - 1, 0), max(int(uv[:, 1].min()) - 1, 0)
            u1, v1 = min(int(uv[:, 0].max()) + 2, width), min(int(uv[:, 1].max()) + 2, height)
        if u1 <= u0 or v1 <= v0:
            continue
        sub = rays[v0:v1, u0:u1].reshape(-1, 3)
        t, normal = _slab(origin, sub, boxes[k])
        t = t.reshape(v1 - v0, u1 - u0)
        if owner[k] >= 0:
            mask = object_mask.setdefault(int(owner[k]), np.zeros((height, width), dtype=bool))
            mask[v0:v1, u0:u1] |= np.isfinite(t)
        nearer = t < zbuf[v0:v1, u0:u1]
        shade = (0.55 + 0.45 * np.abs(normal @ light)).reshape(v1 - v0, u1 - u0, 1)
        patch = np.asarray(colours[k], dtype=np.float32) * shade
        colour[v0:v1, u0:u1] = np.where(nearer[..., None], patch, colour[v0:v1, u0:u1])
        zbuf[v0:v1, u0:u1] = np.where(nearer, t, zbuf[v0:v1, u0:u1])
        id_map[v0:v1, u0:u1] = np.where(nearer, owner[k], id_map[v0:v1, u0:u1])
    visible = np.bincount(id_map.ravel() + 1, minlength=n_obj + 1)[1:].astype(np.float64)
    for i, mask in object_mask.items():
        full[i] = mask.sum()
    image = np.clip(colour + rng.normal(0, 3, colour.shape), 0, 255).astype(np.uint8)
    if (height, width) != (out_h, out_w):
        image = np.asarray(Image.fromarray(image).resize((out_w, out_h), Image.BILINEAR))
    return RenderedFrame(image, visible, full)
