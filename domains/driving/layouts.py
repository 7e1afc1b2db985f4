"""Point-cloud layouts: what the numbers of a LiDAR file mean, and the check that they mean it.

A `PointLayout` fixes, for one dataset, the columns of raw arrays (``.bin`` / ``.npy``: stride,
field names, dtype), the intensity scale, the axes and the sensor height. Every reader turns a
file into the model frame through it: KITTI's LiDAR frame (x forward, y left, z up, the sensor at
the origin 1.73 m above the ground) with intensity in [0, 1].

Presets (the conventions of the tools that write such files):

- ``kitti``: 4 float32 x, y, z, reflectance in [0, 1]; the KITTI Velodyne frame.
- ``nuscenes``: 5 float32 x, y, z, intensity 0-255, ring (nuScenes ``LIDAR_TOP/*.pcd.bin``); the
  nuScenes LiDAR frame is x right, y forward, z up, about 1.84 m above the ground.
- ``waymo``: 6 float32 x, y, z, intensity, elongation, range-image index (MMDetection3D's Waymo to
  KITTI converter; older versions wrote a timestamp in the 6th column); the Waymo vehicle frame
  (x forward, y left, ground at z = 0); raw intensity is unbounded and is squashed by tanh as
  OpenPCDet and MMDetection3D do.

Every file is checked against its layout before use (`check_columns`): coordinates plausible for
a vehicle sensor, intensity inside the layout's range, ring integer-valued, nothing NaN or inf.
A file that does not fit is refused with the problems found and the layout that fits best.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

KITTI_GROUND_Z = -1.73  # the ground below KITTI's Velodyne (mounted 1.73 m high)
MAX_RANGE = 250.0  # |x|, |y| of a vehicle LiDAR point (m), 99.9th percentile
Z_RANGE = (-30.0, 30.0)  # z of a vehicle LiDAR point (m), 0.1th / 99.9th percentiles
MAX_ELONGATION = 5.0  # Waymo elongation, 99.9th percentile (colour channels of indoor clouds reach 255)
INTENSITY_ALIASES = ("intensity", "reflectance", "remission", "i", "intensities", "scalar_intensity")
Axes = Literal["forward-left-up", "right-forward-up"]


@dataclass(frozen=True)
class PointLayout:
    """A resolved layout.

    Attributes:
        name: preset name, or ``custom`` for user-given fields.
        fields: column names of raw arrays (``.bin`` / ``.npy``); the stride is ``len(fields)``.
        dtype: numpy dtype of raw arrays (little-endian).
        intensity_max: the file's intensity for full reflectance (1 for KITTI, 255 for nuScenes),
            or None when intensity is unbounded and squashed by tanh (Waymo).
        axes: ``forward-left-up`` (KITTI, Waymo) or ``right-forward-up`` (nuScenes).
        ground_z: z of the ground in the file's frame (m).
    """

    name: str
    fields: tuple[str, ...]
    dtype: str = "float32"
    intensity_max: float | None = 1.0
    axes: Axes = "forward-left-up"
    ground_z: float = KITTI_GROUND_Z

    @property
    def stride(self) -> int:
        return len(self.fields)

    def describe(self) -> str:
        scale = "tanh-squashed" if self.intensity_max is None else f"0-{self.intensity_max:g}"
        return f"{self.name!r} ({self.stride} {self.dtype} per point: {', '.join(self.fields)}; intensity {scale})"

    def file_to_model(self) -> np.ndarray:
        """The (4, 4) transform from the file's frame to the model (KITTI LiDAR) frame."""
        m = np.eye(4)
        if self.axes == "right-forward-up":  # x_model = y_file (forward), y_model = -x_file (left)
            m[:2, :2] = [[0.0, 1.0], [-1.0, 0.0]]
        m[2, 3] = KITTI_GROUND_Z - self.ground_z
        return m

    def normalise_intensity(self, values: np.ndarray) -> np.ndarray:
        if self.intensity_max is None:
            return np.tanh(np.clip(values, 0, None)).astype(np.float32)
        return np.clip(values / self.intensity_max, 0.0, 1.0).astype(np.float32)


PRESETS: dict[str, PointLayout] = {
    "kitti": PointLayout("kitti", ("x", "y", "z", "intensity")),
    "nuscenes": PointLayout("nuscenes", ("x", "y", "z", "intensity", "ring"), intensity_max=255.0, axes="right-forward-up", ground_z=-1.84),
    "waymo": PointLayout("waymo", ("x", "y", "z", "intensity", "elongation", "index"), intensity_max=None, ground_z=0.0),
}


class PointLayoutOptions(BaseModel):
    """User-given layout (``data.options.point_layout``): a preset with any field overridden.

    Example: ``--set 'data.options.point_layout={preset: kitti, fields: [x, y, z, intensity, t]}'``.
    """

    model_config = ConfigDict(extra="forbid")
    preset: Literal["kitti", "nuscenes", "waymo"] = "kitti"
    fields: tuple[str, ...] | None = Field(None, description="column names of .bin/.npy arrays; needs x, y, z; 'intensity' optional, other names are carried and ignored")
    dtype: Literal["float32", "float64"] | None = None
    intensity_max: float | None = Field(None, gt=0, description="the file's intensity value for full reflectance")
    intensity_tanh: bool = Field(False, description="intensity is unbounded: squash by tanh (Waymo)")
    axes: Axes | None = None
    ground_z: float | None = Field(None, ge=-10, le=10, description="z of the ground in the file's frame (m)")

    @field_validator("fields")
    @classmethod
    def _has_xyz(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None:
            missing = [f for f in ("x", "y", "z") if f not in value]
            if missing or len(set(value)) != len(value):
                raise ValueError(f"fields {list(value)} must name x, y and z once each")
        return value


def resolve_layout(value: str | PointLayoutOptions | Mapping | None) -> PointLayout:
    """The `PointLayout` of a ``data.options.point_layout`` value (preset name or options)."""
    if value is None:
        return PRESETS["kitti"]
    if isinstance(value, str):
        if value not in PRESETS:
            raise ValueError(f"point_layout {value!r} is not a preset; choose {', '.join(PRESETS)} or give fields")
        return PRESETS[value]
    opts = value if isinstance(value, PointLayoutOptions) else PointLayoutOptions.model_validate(dict(value))
    base = PRESETS[opts.preset]
    changes: dict = {k: v for k, v in {"fields": opts.fields, "dtype": opts.dtype, "axes": opts.axes, "ground_z": opts.ground_z}.items() if v is not None}
    if opts.intensity_tanh:
        changes["intensity_max"] = None
    elif opts.intensity_max is not None:
        changes["intensity_max"] = opts.intensity_max
    custom = bool(changes)
    return replace(base, name=f"{opts.preset}+custom" if custom else base.name, **changes)


def _pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if values.size else 0.0


def check_columns(columns: Mapping[str, np.ndarray], layout: PointLayout) -> list[str]:
    """Problems of named columns against `layout` (empty when the file fits).

    Percentiles (0.1 / 99.9) rather than extremes, so a few stray returns do not refuse a scan,
    while a column of another field (a wrong stride) always shows.
    """
    problems = []
    for name, values in columns.items():
        bad = ~np.isfinite(values)
        if bad.any():
            problems.append(f"{name}: {int(bad.sum())} NaN/inf value(s) (first at point {int(np.flatnonzero(bad)[0])})")
    if problems:
        return problems
    x, y, z = (np.asarray(columns[k], dtype=np.float64) for k in ("x", "y", "z"))
    if x.size == 0:
        return ["the cloud has no points"]
    reach = max(_pct(np.abs(x), 99.9), _pct(np.abs(y), 99.9))
    if reach > MAX_RANGE:
        where = f"median x {np.median(x):.6g}, y {np.median(y):.6g}"
        hint = " (georeferenced coordinates, not a sensor frame)" if min(abs(np.median(x)), abs(np.median(y))) > 1000 else ""
        problems.append(f"x/y: 99.9th percentile of |x|, |y| is {reach:.6g} m > {MAX_RANGE:g} m{hint}; {where}")
    z_low, z_high = _pct(z, 0.1), _pct(z, 99.9)
    if z_low < Z_RANGE[0] or z_high > Z_RANGE[1]:
        problems.append(f"z: 0.1-99.9th percentiles {z_low:.6g} .. {z_high:.6g} m outside {Z_RANGE[0]:g} .. {Z_RANGE[1]:g} m")
    if np.ptp(x) == 0 and np.ptp(y) == 0:
        problems.append(f"x/y: every point is at ({x[0]:g}, {y[0]:g})")
    if "intensity" in columns:
        i = np.asarray(columns["intensity"], dtype=np.float64)
        low, high = _pct(i, 0.1), _pct(i, 99.9)
        top = layout.intensity_max
        if low < 0 or (top is not None and high > top * (1 + 1e-6)):
            accepted = "0 or more" if top is None else f"0 .. {top:g}"
            problems.append(f"intensity: 0.1-99.9th percentiles {low:.6g} .. {high:.6g}, {100 * float((i < 0).mean()):.1f}% negative; layout {layout.name!r} accepts {accepted}")
    if "ring" in columns:
        r = np.asarray(columns["ring"], dtype=np.float64)
        fractional = float((r != np.round(r)).mean())
        if fractional > 0.01 or _pct(r, 0.1) < 0 or _pct(r, 99.9) > 255:
            problems.append(f"ring: {100 * fractional:.1f}% non-integer, range {r.min():.6g} .. {r.max():.6g}; a ring is a laser index 0-255")
    if "elongation" in columns:  # Waymo's pulse elongation: small and non-negative
        e = np.asarray(columns["elongation"], dtype=np.float64)
        if _pct(e, 0.1) < 0 or _pct(e, 99.9) > MAX_ELONGATION:
            problems.append(f"elongation: 0.1-99.9th percentiles {_pct(e, 0.1):.6g} .. {_pct(e, 99.9):.6g}; a Waymo elongation lies in 0 .. {MAX_ELONGATION:g}")
    return problems


def split_columns(array: np.ndarray, fields: tuple[str, ...]) -> dict[str, np.ndarray]:
    """(N, C) array -> {field: (N,)} for the fields of a layout (C == len(fields))."""
    return {name: array[:, k] for k, name in enumerate(fields) if name != "_"}


def best_raw_fit(flat: np.ndarray, n_bytes: int, itemsize: int, exclude: str = "") -> str:
    """A sentence naming the preset or stride under which a raw float array reads plausibly."""
    bad = int((~np.isfinite(flat)).sum())
    if bad:
        return f"the file holds {bad} NaN/inf value(s) whatever the stride: it is corrupt or not {flat.dtype.name} data"
    for name, preset in PRESETS.items():
        if name == exclude or np.dtype(preset.dtype).itemsize != itemsize or flat.size % preset.stride:
            continue
        if not check_columns(split_columns(flat.reshape(-1, preset.stride), preset.fields), preset):
            return f"it fits preset {preset.describe()}: set data.options.point_layout={name}"
    for stride in range(3, 10):
        if flat.size % stride:
            continue
        fields = ("x", "y", "z", "intensity")[: min(stride, 4)] + tuple(f"c{k}" for k in range(4, stride))
        unbounded = PointLayout("probe", fields, intensity_max=None)
        if not check_columns(split_columns(flat.reshape(-1, stride), fields), unbounded):
            return (f"no preset fits; it reads plausibly as {stride} values per point (x, y, z, a non-negative 4th column, ...): "
                    f"declare them, e.g. data.options.point_layout={{fields: [{', '.join(fields)}]}}")
    return f"no stride of 3-9 values per point gives plausible coordinates ({n_bytes} bytes); the file may not be a point cloud of this dtype"
