"""Synthetic road scenes and a ray-cast spinning LiDAR for the demo data.

A scene is a flat ground plane (LiDAR frame, z = -`SENSOR_HEIGHT`) with lanes, sidewalks and
walls, labelled objects (cars, pedestrians, cyclists) and unlabelled clutter (poles). Each object is
made of a few boxes ("primitives": a car's body and cabin, a cyclist's bike and rider) so that the
points and the image look like the class, while its label is the enclosing box. The LiDAR casts
every beam of a multi-beam spinning sensor against all primitives and the ground at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SENSOR_HEIGHT = 1.73
DEMO_CLASSES = ("Car", "Pedestrian", "Cyclist")
# Material ids: reflectivity of the surface (intensity before the incidence term).
MATERIAL_REFLECTIVITY = np.array([0.12, 0.45, 0.8, 0.25, 0.35, 0.55, 0.3], dtype=np.float32)
GROUND, CAR_BODY, CAR_PLATE, PED, RIDER, BIKE, CLUTTER = range(7)


@dataclass
class SceneObject:
    """A labelled object: LiDAR box (x, y, z, l, w, h, heading) and its primitives (K, 7) with materials (K,)."""

    cls: str
    box: np.ndarray
    primitives: np.ndarray
    materials: np.ndarray
    colour: tuple[int, int, int]


@dataclass
class Scene:
    objects: list[SceneObject]
    clutter: np.ndarray  # (C, 7) unlabelled boxes (poles, walls)


def _to_world(box: np.ndarray, local: np.ndarray) -> np.ndarray:
    """Place primitives given in the object's frame (K, 7) into the LiDAR frame."""
    c, s = math.cos(box[6]), math.sin(box[6])
    out = local.copy()
    out[:, 0] = box[0] + c * local[:, 0] - s * local[:, 1]
    out[:, 1] = box[1] + s * local[:, 0] + c * local[:, 1]
    out[:, 2] = box[2] + local[:, 2]
    out[:, 6] = box[6] + local[:, 6]
    return out


def _make_object(cls: str, x: float, y: float, heading: float, rng: np.random.Generator) -> SceneObject:
    if cls == "Car":
        l, w, h = rng.normal(3.9, 0.25), rng.normal(1.62, 0.07), rng.normal(1.52, 0.08)
        # body on 0.3 m of wheels, a narrower cabin on top, a dark wheel band below
        local = np.array([[0, 0, -h / 2 + 0.3 + 0.55 * h / 2, l, w, 0.55 * h, 0],
                          [-0.1 * l, 0, h / 2 - 0.225 * h, 0.55 * l, 0.92 * w, 0.45 * h, 0],
                          [0, 0, -h / 2 + 0.15, l, w * 0.96, 0.3, 0]])
        materials = np.array([CAR_BODY, CAR_BODY, CLUTTER])
        palette = [(180, 30, 30), (30, 60, 160), (220, 220, 225), (30, 30, 35), (150, 150, 155), (200, 170, 40)]
        colour = palette[rng.integers(len(palette))]
    elif cls == "Pedestrian":
        l, w, h = rng.normal(0.82, 0.1), rng.normal(0.62, 0.06), rng.normal(1.74, 0.08)
        local = np.array([[0, 0, -h / 2 + 0.44 * h, 0.6 * l, w, 0.88 * h, 0], [0, 0, h / 2 - 0.06 * h, 0.45 * l, 0.4 * w, 0.12 * h, 0]])
        materials = np.array([PED, PED])
        colour = (230, 120, 30)  # orange coat, a class cue the image shows and the points do not
    else:
        l, w, h = rng.normal(1.76, 0.08), rng.normal(0.6, 0.05), rng.normal(1.74, 0.06)
        local = np.array([[0, 0, -h / 2 + 0.36, l, 0.12, 0.72, 0], [-0.1, 0, h / 2 - 0.5, 0.5, w, 1.0, 0]])
        materials = np.array([BIKE, RIDER])
        colour = (40, 200, 60)  # green jersey
    box = np.array([x, y, -SENSOR_HEIGHT + h / 2, l, w, h, heading])
    return SceneObject(cls, box, _to_world(box, local), materials, colour)


def _overlaps(box: np.ndarray, placed: list[np.ndarray], margin: float) -> bool:
    for other in placed:
        if np.hypot(box[0] - other[0], box[1] - other[1]) < (max(box[3], box[4]) + max(other[3], other[4])) / 2 + margin:
            return True
    return False


def sample_scene(rng: np.random.Generator, max_range: float = 44.0, half_fov_deg: float = 38.0) -> Scene:
    """Draw one road scene with cars in lanes and parked, pedestrians on sidewalks, cyclists at the kerb.

    Objects are kept inside the camera's field of view and `max_range` metres so the labels are
    visible to both sensors (other objects would be DontCare in KITTI).
    """
    placed: list[np.ndarray] = []
    objects: list[SceneObject] = []
    tan_fov = math.tan(math.radians(half_fov_deg))

    def try_place(cls: str, y_choices: list[float], heading_choices: list[float], y_jitter: float, heading_jitter: float, free_heading: float) -> None:
        for _ in range(20):
            x = rng.uniform(5.0, max_range)
            y = rng.choice(y_choices) + rng.normal(0, y_jitter)
            if abs(y) > x * tan_fov - 1.5 or abs(y) > 19.0:
                continue
            heading = rng.uniform(-math.pi, math.pi) if rng.random() < free_heading else rng.choice(heading_choices) + rng.normal(0, heading_jitter)
            obj = _make_object(cls, x, y, heading, rng)
            if not _overlaps(obj.box, placed, 0.6):
                placed.append(obj.box)
                objects.append(obj)
                return

    for _ in range(rng.integers(5, 12)):
        try_place("Car", [-5.25, -1.75, 1.75, 5.25, -8.6, 8.6], [0.0, math.pi], 0.3, 0.08, 0.15)
    for _ in range(rng.integers(1, 5)):
        try_place("Pedestrian", [-10.5, 10.5, -12.0, 12.0, -9.0, 9.0], [math.pi / 2, -math.pi / 2], 1.0, 0.4, 0.6)
    for _ in range(rng.integers(1, 4)):
        try_place("Cyclist", [-7.2, 7.2, -3.0, 3.0], [0.0, math.pi], 0.4, 0.1, 0.2)
    clutter = []
    for side in (-1, 1):
        clutter.append([33.0, side * rng.uniform(15.5, 17.5), -SENSOR_HEIGHT + 4.0, 60.0, 0.5, 8.0, 0.0])  # building front
        for x in np.arange(rng.uniform(6, 14), 50, rng.uniform(12, 20)):
            clutter.append([x, side * rng.uniform(13.0, 14.0), -SENSOR_HEIGHT + 2.5, 0.25, 0.25, 5.0, 0.0])  # pole
    return Scene(objects=objects, clutter=np.array(clutter))


@dataclass
class LidarSpec:
    """A spinning multi-beam sensor (defaults: HDL-64E-like beams over the full 360 degrees)."""

    beams: int = 64
    elevation_deg: tuple[float, float] = (2.0, -24.8)
    azimuth_step_deg: float = 0.2
    max_range: float = 80.0
    dropout: float = 0.08
    range_noise: float = 0.02


def _ray_box_hits(directions: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance along unit rays from the origin to oriented boxes (slab test).

    Returns:
        t (R, K) entry distance (inf when missed) and the local axis (0, 1, 2) of the entered face.
    """
    c, s = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    ox, oy = -boxes[:, 0], -boxes[:, 1]
    o = np.stack([c * ox + s * oy, -s * ox + c * oy, -boxes[:, 2]], 1)  # (K, 3) origin in box frame
    dx = directions[:, None, 0] * c + directions[:, None, 1] * s  # (R, K)
    dy = -directions[:, None, 0] * s + directions[:, None, 1] * c
    dz = np.broadcast_to(directions[:, None, 2], dx.shape)
    d = np.stack([dx, dy, dz], -1)  # (R, K, 3)
    d = np.where(np.abs(d) < 1e-9, 1e-9, d)
    half = boxes[None, :, 3:6] / 2
    t1 = (-half - o[None]) / d
    t2 = (half - o[None]) / d
    tnear = np.minimum(t1, t2)
    tmin = tnear.max(-1)
    tmax = np.maximum(t1, t2).min(-1)
    hit = (tmax >= tmin) & (tmin > 0.05)
    return np.where(hit, tmin, np.inf), tnear.argmax(-1)


def _corner_azimuths(boxes: np.ndarray) -> np.ndarray:
    """Azimuths (K, 4) of the BEV corners of boxes (K, 7) seen from the sensor."""
    c, s = np.cos(boxes[:, 6:7]), np.sin(boxes[:, 6:7])
    lx = np.array([1, -1, -1, 1]) * boxes[:, 3:4] / 2
    ly = np.array([1, 1, -1, -1]) * boxes[:, 4:5] / 2
    x = boxes[:, 0:1] + c * lx - s * ly
    y = boxes[:, 1:2] + s * lx + c * ly
    return np.arctan2(y, x)


def cast_lidar(scene: Scene, spec: LidarSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Simulate one sweep.

    Returns:
        points (N, 4) float32 x, y, z, intensity in the LiDAR frame, and the index of the labelled
        object each point hit (-1 for ground and clutter).
    """
    elev = np.radians(np.linspace(spec.elevation_deg[0], spec.elevation_deg[1], spec.beams))
    azim = np.radians(np.arange(-180.0, 180.0, spec.azimuth_step_deg))
    el, az = np.meshgrid(elev, azim, indexing="ij")
    dirs = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], -1).reshape(-1, 3)  # (R, 3)
    prims = [o.primitives for o in scene.objects] + [scene.clutter]
    owner = np.concatenate([np.full(len(o.primitives), i) for i, o in enumerate(scene.objects)] + [np.full(len(scene.clutter), -1)])
    materials = np.concatenate([o.materials for o in scene.objects] + [np.full(len(scene.clutter), CLUTTER)])
    boxes = np.concatenate(prims, 0)
    grid = dirs.reshape(spec.beams, -1, 3)  # (beams, A, 3)
    t_box = np.full(grid.shape[:2], np.inf)
    prim_of_ray = np.full(grid.shape[:2], -1)
    face_of_ray = np.zeros(grid.shape[:2], dtype=np.int64)
    corner_az = _corner_azimuths(boxes)  # (K, 4)
    for k in range(len(boxes)):  # loop over primitives (tens), each tested only on the rays that can reach it
        lo, hi = corner_az[k].min(), corner_az[k].max()
        cols = np.arange(grid.shape[1]) if hi - lo > math.pi else np.flatnonzero((azim >= lo - 0.01) & (azim <= hi + 0.01))
        if cols.size == 0:
            continue
        sub = grid[:, cols].reshape(-1, 3)
        t_k, f_k = _ray_box_hits(sub, boxes[k:k + 1])
        t_k, f_k = t_k[:, 0].reshape(spec.beams, -1), f_k[:, 0].reshape(spec.beams, -1)
        better = t_k < t_box[:, cols]
        t_box[:, cols] = np.where(better, t_k, t_box[:, cols])
        prim_of_ray[:, cols] = np.where(better, k, prim_of_ray[:, cols])
        face_of_ray[:, cols] = np.where(better, f_k, face_of_ray[:, cols])
    t_box, prim_of_ray, face_of_ray = t_box.reshape(-1), prim_of_ray.reshape(-1), face_of_ray.reshape(-1)
    t_ground = np.where(dirs[:, 2] < -1e-6, -SENSOR_HEIGHT / np.minimum(dirs[:, 2], -1e-6), np.inf)
    ground_first = t_ground <= t_box
    t = np.where(ground_first, t_ground, t_box)
    keep = np.isfinite(t) & (t < spec.max_range) & (rng.random(len(t)) > spec.dropout * (1 + t / spec.max_range))
    idx = np.flatnonzero(keep)
    t = t[idx] + rng.normal(0, spec.range_noise, idx.size)
    hit_prim = np.where(ground_first[idx], -1, prim_of_ray[idx])  # -1: ground
    xyz = dirs[idx] * t[:, None]
    material = np.where(hit_prim >= 0, materials[np.maximum(hit_prim, 0)], GROUND)
    # intensity: reflectivity x incidence (ground: grazing angle) with speckle
    incidence = np.where(hit_prim >= 0, 0.6 + 0.4 * (face_of_ray[idx] != 2), np.abs(dirs[idx, 2]) * 3)
    intensity = np.clip(MATERIAL_REFLECTIVITY[material] * np.clip(incidence, 0.1, 1.0) + rng.normal(0, 0.03, idx.size), 0, 1)
    obj = np.where(hit_prim >= 0, owner[np.maximum(hit_prim, 0)], -1)
    points = np.concatenate([xyz, intensity[:, None]], 1).astype(np.float32)
    return points, obj
