"""Point-cloud readers and writers: KITTI ``.bin``, ``.npy``, and ``.pcd`` / ``.ply`` through open3d.

Every reader returns ``(N, 4)`` float32 ``x, y, z, intensity`` in the LiDAR frame and rejects
malformed input with a `ValueError` that names the file and the problem.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

POINT_SUFFIXES: tuple[str, ...] = (".bin", ".npy", ".pcd", ".ply")


def _check_points(points: np.ndarray, path: Path) -> np.ndarray:
    if points.shape[0] == 0:
        raise ValueError(f"{path}: the point cloud has no points")
    bad = ~np.isfinite(points).all(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{path}: {int(bad.sum())} point(s) contain NaN or inf (first at row {first}: {points[first].tolist()}); points must be finite")
    return points


def read_velodyne(path: str | Path) -> np.ndarray:
    """Read a KITTI ``velodyne/*.bin`` (little-endian float32 x, y, z, reflectance).

    Raises:
        ValueError: size not a multiple of 16 bytes, no points, NaN/inf values.
    """
    path = Path(path)
    size = path.stat().st_size
    if size % 16:
        raise ValueError(f"{path}: size {size} bytes is not a multiple of 16 (4 float32 per point: x, y, z, reflectance); the file is truncated or not a KITTI velodyne scan")
    points = np.fromfile(path, dtype="<f4").reshape(-1, 4)
    return _check_points(points, path)


def write_velodyne(path: str | Path, points: np.ndarray) -> Path:
    """Write (N, 4) points as a KITTI ``.bin``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.ascontiguousarray(points, dtype="<f4").reshape(-1, 4).tofile(path)
    return path


def read_points(path: str | Path) -> np.ndarray:
    """Read a point cloud of any supported suffix as (N, 4) float32 x, y, z, intensity.

    ``.npy`` holds (N, 3) or (N, >=4) (columns beyond the 4th are dropped); ``.pcd``/``.ply`` are
    read by open3d's tensor I/O, which keeps an ``intensity`` attribute (0 when the file has none).

    Raises:
        ValueError: unsupported suffix, wrong array shape, no points, NaN/inf values.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".bin":
        return read_velodyne(path)
    if suffix == ".npy":
        array = np.load(path, allow_pickle=False)
        if array.ndim != 2 or array.shape[1] < 3:
            raise ValueError(f"{path}: expected an (N, 3) or (N, 4) array of x, y, z[, intensity]; found shape {array.shape}")
        points = np.zeros((array.shape[0], 4), dtype=np.float32)
        points[:, : min(4, array.shape[1])] = array[:, :4]
        return _check_points(points, path)
    if suffix in (".pcd", ".ply"):
        from mmapps.open3d_loader import import_open3d

        o3d = import_open3d()
        cloud = o3d.t.io.read_point_cloud(str(path))
        if "positions" not in cloud.point or cloud.point.positions.shape[0] == 0:
            raise ValueError(f"{path}: the point cloud has no points (or open3d could not parse it)")
        xyz = cloud.point.positions.numpy().astype(np.float32)
        points = np.zeros((xyz.shape[0], 4), dtype=np.float32)
        points[:, :3] = xyz
        if "intensity" in cloud.point:
            points[:, 3] = cloud.point.intensity.numpy().reshape(-1).astype(np.float32)
        return _check_points(points, path)
    raise ValueError(f"{path}: unsupported point-cloud suffix {suffix!r}; accepted {', '.join(POINT_SUFFIXES)}")


def write_points_open3d(path: str | Path, points: np.ndarray) -> Path:
    """Write (N, 4) points as ``.pcd`` or ``.ply`` with an ``intensity`` attribute (open3d tensor I/O)."""
    from mmapps.open3d_loader import import_open3d

    o3d = import_open3d()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cloud = o3d.t.geometry.PointCloud()
    cloud.point.positions = o3d.core.Tensor(np.ascontiguousarray(points[:, :3], dtype=np.float32))
    cloud.point.intensity = o3d.core.Tensor(np.ascontiguousarray(points[:, 3:4], dtype=np.float32))
    if not o3d.t.io.write_point_cloud(str(path), cloud):
        raise OSError(f"{path}: open3d could not write the point cloud")
    return path


def find_point_file(folder: Path, frame_id: str) -> Path | None:
    """Return the first ``folder/frame_id<suffix>`` that exists, trying `POINT_SUFFIXES` in order."""
    for suffix in POINT_SUFFIXES:
        candidate = folder / f"{frame_id}{suffix}"
        if candidate.is_file():
            return candidate
    return None
