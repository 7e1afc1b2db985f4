"""Point-cloud readers: ``.bin``, ``.npy``, ``.pcd``, ``.ply``, ``.las`` / ``.laz``, through a `PointLayout`.

`read_points` returns ``(N, 4)`` float32 ``x, y, z, intensity`` in the model frame (KITTI's LiDAR
frame, intensity in [0, 1]). Raw arrays (``.bin``, plain ``.npy``) are split by the layout's
stride and fields; named formats (PCD, PLY, LAS, structured ``.npy``) by their field names. Every
file is checked against the layout (`layouts.check_columns`) and refused with a `ValueError`
naming the file, what was found and the layout that fits best.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
from mmapps_domains.driving.layouts import (
    INTENSITY_ALIASES,
    PRESETS,
    PointLayout,
    best_raw_fit,
    check_columns,
    split_columns,
)

POINT_SUFFIXES: tuple[str, ...] = (".bin", ".npy", ".pcd", ".ply", ".las", ".laz")
KITTI = PRESETS["kitti"]
LAS_INTENSITY_MAX = 65535.0  # the LAS specification stores intensity normalised to 16 bits


class PointColumns(NamedTuple):
    """A file's columns by name (file frame), the layout they are checked against, and a hint for refusals."""

    columns: dict[str, np.ndarray]
    layout: PointLayout
    hint: str
    raw: np.ndarray | None = None  # the flat values of a raw array, to find the layout that fits


def _raw_columns(flat: np.ndarray, path: Path, layout: PointLayout, n_bytes: int) -> PointColumns:
    if flat.size == 0:
        raise ValueError(f"{path}: the point cloud has no points")
    if flat.size % layout.stride:
        raise ValueError(f"{path}: {n_bytes} bytes is not a whole number of points of layout {layout.describe()} "
                         f"({layout.stride * flat.itemsize} bytes each); {best_raw_fit(flat, n_bytes, flat.itemsize, layout.name)}")
    cols = split_columns(flat.reshape(-1, layout.stride).astype(np.float64), layout.fields)
    return PointColumns(cols, layout, "", flat)


def _named_columns(cols: dict[str, np.ndarray], path: Path, layout: PointLayout) -> PointColumns:
    lower = {name.lower(): name for name in cols}
    missing = [k for k in ("x", "y", "z") if k not in lower]
    if missing:
        raise ValueError(f"{path}: no {', '.join(missing)} field (fields: {', '.join(cols)}); a point cloud needs x, y, z")
    out = {k: cols[lower[k]] for k in ("x", "y", "z")}
    alias = next((lower[a] for a in INTENSITY_ALIASES if a in lower), None)
    if alias is not None:
        out["intensity"] = cols[alias]
    elif "intensity" in layout.fields:
        raise ValueError(f"{path}: no intensity field (fields: {', '.join(cols)}; accepted names {', '.join(INTENSITY_ALIASES)}); layout {layout.describe()} "
                         "needs one. For clouds without intensity declare data.options.point_layout={fields: [x, y, z]} (intensity is then 0)")
    if "ring" in lower:
        out["ring"] = cols[lower["ring"]]
    hint = ""
    if "intensity" in out and out["intensity"].size:
        top = float(np.percentile(out["intensity"], 99.9))
        fits = [p.name for p in PRESETS.values() if p.intensity_max is not None and top <= p.intensity_max and p.name != layout.name]
        hint = (f"its intensity reaches {top:.6g}: " + (f"preset {fits[0]!r} accepts that scale, or " if fits else "")
                + "give the scale, e.g. data.options.point_layout={preset: kitti, intensity_max: 255}")
    return PointColumns(out, layout, hint)


def read_point_columns(path: str | Path, layout: PointLayout = KITTI) -> PointColumns:
    """Read a point file's columns by name in the file's frame (no check, no transform).

    Raises:
        ValueError: unsupported suffix, malformed file, size not a whole number of points.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".bin":
        n_bytes = path.stat().st_size
        flat = np.fromfile(path, dtype=np.dtype(layout.dtype).newbyteorder("<"), count=n_bytes // np.dtype(layout.dtype).itemsize)
        if n_bytes % flat.itemsize:
            raise ValueError(f"{path}: {n_bytes} bytes is not a whole number of {layout.dtype} values (truncated file?); layout {layout.describe()}")
        return _raw_columns(flat, path, layout, n_bytes)
    if suffix == ".npy":
        array = np.load(path, allow_pickle=False)
        if array.dtype.names:
            return _named_columns({name: np.asarray(array[name], dtype=np.float64).reshape(-1) for name in array.dtype.names}, path, layout)
        if array.ndim != 2 or array.shape[1] != layout.stride:
            fits = [p.describe() for p in PRESETS.values() if array.ndim == 2 and p.stride == array.shape[1]
                    and not check_columns(split_columns(array.astype(np.float64), p.fields), p)]
            hint = f"it fits preset {fits[0]}" if fits else f"declare its {array.shape[-1]} columns with data.options.point_layout={{fields: [x, y, z, ...]}}"
            raise ValueError(f"{path}: array of shape {array.shape}; layout {layout.describe()} needs (N, {layout.stride}); {hint}")
        return _raw_columns(np.ascontiguousarray(array).reshape(-1), path, layout, array.nbytes)
    if suffix == ".pcd":
        from mmapps_domains.driving.pcd import read_pcd

        return _named_columns(read_pcd(path), path, layout)
    if suffix == ".ply":
        from mmapps_domains.driving.ply import read_ply

        return _named_columns(read_ply(path), path, layout)
    if suffix in (".las", ".laz"):
        return _las_columns(path, layout)
    raise ValueError(f"{path}: unsupported point-cloud suffix {suffix!r}; accepted {', '.join(POINT_SUFFIXES)}")


def _las_columns(path: Path, layout: PointLayout) -> PointColumns:
    import laspy

    try:
        las = laspy.read(path)
    except (laspy.errors.LaspyException, OSError, ValueError, EOFError) as err:
        raise ValueError(f"{path}: not a readable LAS/LAZ file ({type(err).__name__}: {err})") from None
    cols = {"x": np.asarray(las.x, dtype=np.float64), "y": np.asarray(las.y, dtype=np.float64), "z": np.asarray(las.z, dtype=np.float64)}
    if "intensity" in layout.fields:
        cols["intensity"] = np.asarray(las.intensity, dtype=np.float64)
    # LAS intensity is 16-bit by the specification, whatever the preset's scale for raw arrays
    return PointColumns(cols, replace(layout, intensity_max=LAS_INTENSITY_MAX), "LAS points must be in the sensor frame, not georeferenced")


def read_points(path: str | Path, layout: PointLayout = KITTI) -> np.ndarray:
    """Read a point cloud of any supported suffix as (N, 4) float32 x, y, z, intensity in the model frame.

    Raises:
        ValueError: unsupported suffix, malformed file, or values that do not fit `layout`
            (naming what was found and the layout that fits best).
    """
    path = Path(path)
    cols, checked, hint, raw = read_point_columns(path, layout)
    problems = check_columns(cols, checked)
    if problems:
        if raw is not None:
            hint = best_raw_fit(raw, raw.nbytes, raw.itemsize, layout.name)
        raise ValueError(f"{path}: does not fit point layout {checked.describe()}: {'; '.join(problems)}" + (f"; {hint}" if hint else ""))
    xyz = np.stack([cols["x"], cols["y"], cols["z"]], axis=1)
    transform = layout.file_to_model()
    points = np.zeros((xyz.shape[0], 4), dtype=np.float32)
    points[:, :3] = xyz @ transform[:3, :3].T + transform[:3, 3]
    if "intensity" in cols:
        points[:, 3] = checked.normalise_intensity(cols["intensity"])
    return points


def read_velodyne(path: str | Path) -> np.ndarray:
    """Read a KITTI ``velodyne/*.bin`` (little-endian float32 x, y, z, reflectance in [0, 1])."""
    return read_points(Path(path), KITTI)


def write_velodyne(path: str | Path, points: np.ndarray) -> Path:
    """Write (N, 4) points as a KITTI ``.bin``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.ascontiguousarray(points, dtype="<f4").reshape(-1, 4).tofile(path)
    return path


def write_points_open3d(path: str | Path, points: np.ndarray, compressed: bool = False) -> Path:
    """Write (N, 4) points as ``.pcd`` or ``.ply`` with an ``intensity`` attribute (open3d tensor I/O)."""
    from mmapps.open3d_loader import import_open3d

    o3d = import_open3d()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cloud = o3d.t.geometry.PointCloud()
    cloud.point.positions = o3d.core.Tensor(np.ascontiguousarray(points[:, :3], dtype=np.float32))
    cloud.point.intensity = o3d.core.Tensor(np.ascontiguousarray(points[:, 3:4], dtype=np.float32))
    if not o3d.t.io.write_point_cloud(str(path), cloud, compressed=compressed):
        raise OSError(f"{path}: open3d could not write the point cloud")
    return path


def find_point_file(folder: Path, frame_id: str) -> Path | None:
    """Return the first ``folder/frame_id<suffix>`` that exists, trying `POINT_SUFFIXES` in order."""
    for suffix in POINT_SUFFIXES:
        candidate = folder / f"{frame_id}{suffix}"
        if candidate.is_file():
            return candidate
    return None
