"""KITTI object-benchmark files: calibration, labels (ground truth and results) and images.

Point clouds are read by `mmapps_domains.driving.points`; split lists by
`mmapps_domains.driving.splits`. Every reader raises `ValueError` naming the file, the field, the
value found and what is accepted, so a dataset can report the frame through `IssueLog`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

KITTI_TYPES: tuple[str, ...] = (
    "Car", "Van", "Truck", "Pedestrian", "Person_sitting", "Cyclist", "Tram", "Misc", "DontCare",
)
CALIB_SHAPES: dict[str, tuple[int, int]] = {
    "P0": (3, 4), "P1": (3, 4), "P2": (3, 4), "P3": (3, 4),
    "R0_rect": (3, 3), "Tr_velo_to_cam": (3, 4), "Tr_imu_to_velo": (3, 4),
}
# Tr_imu_to_velo is unused by detection; files from other rigs often lack it.
REQUIRED_CALIB_KEYS: tuple[str, ...] = ("P2", "R0_rect", "Tr_velo_to_cam")


@dataclass(frozen=True)
class Calibration:
    """The matrices of one KITTI ``calib/*.txt`` file (float64 numpy arrays).

    Attributes:
        P: camera name ("P0".."P3") -> (3, 4) projection of rectified camera coordinates.
        R0_rect: (3, 3) rectifying rotation of camera 0.
        Tr_velo_to_cam: (3, 4) LiDAR -> camera 0 (unrectified).
        Tr_imu_to_velo: (3, 4) IMU -> LiDAR, or None when the file has none.
    """

    P: dict[str, np.ndarray]
    R0_rect: np.ndarray
    Tr_velo_to_cam: np.ndarray
    Tr_imu_to_velo: np.ndarray | None = None

    @property
    def P2(self) -> np.ndarray:
        return self.P["P2"]

    def velo_to_image(self) -> np.ndarray:
        """Return the (3, 4) matrix P2 · R0_rect · Tr_velo_to_cam (homogeneous LiDAR -> pixels)."""
        return self.P2 @ _homogeneous(self.R0_rect) @ _homogeneous(self.Tr_velo_to_cam)

    def with_lidar_transform(self, transform: np.ndarray) -> "Calibration":
        """The calibration of points moved by the (4, 4) `transform` (file frame -> model frame)."""
        if np.allclose(transform, np.eye(4)):
            return self
        tr = _homogeneous(self.Tr_velo_to_cam) @ np.linalg.inv(transform)
        return Calibration(P=self.P, R0_rect=self.R0_rect, Tr_velo_to_cam=tr[:3], Tr_imu_to_velo=self.Tr_imu_to_velo)

    def velo_to_rect(self) -> np.ndarray:
        """Return the (4, 4) matrix R0_rect · Tr_velo_to_cam (LiDAR -> rectified camera 0)."""
        return _homogeneous(self.R0_rect) @ _homogeneous(self.Tr_velo_to_cam)


def _homogeneous(matrix: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[: matrix.shape[0], : matrix.shape[1]] = matrix
    return out


def read_calib(path: str | Path) -> Calibration:
    """Read a KITTI calibration file.

    Args:
        path: ``calib/XXXXXX.txt`` with lines ``KEY: v1 v2 ...``.

    Returns:
        The `Calibration`.

    Raises:
        ValueError: a required key missing, a value count that does not match the matrix shape,
            or a non-numeric value.
    """
    path = Path(path)
    values: dict[str, np.ndarray] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        key, sep, rest = line.partition(":")
        key = key.strip()
        if not sep:
            raise ValueError(f"{path}:{number}: expected 'KEY: numbers', found {line[:60]!r}")
        if key not in CALIB_SHAPES:
            continue  # other rigs add keys (e.g. R_rect_00); they are harmless
        try:
            numbers = np.array([float(v) for v in rest.split()], dtype=np.float64)
        except ValueError:
            raise ValueError(f"{path}:{number}: field {key} has a non-numeric value in {rest.strip()[:60]!r}") from None
        shape = CALIB_SHAPES[key]
        if numbers.size != shape[0] * shape[1]:
            raise ValueError(f"{path}:{number}: field {key} has {numbers.size} values; expected {shape[0] * shape[1]} ({shape[0]}x{shape[1]})")
        if not np.all(np.isfinite(numbers)):
            raise ValueError(f"{path}:{number}: field {key} contains NaN or inf")
        values[key] = numbers.reshape(shape)
    missing = [k for k in REQUIRED_CALIB_KEYS if k not in values]
    if missing:
        raise ValueError(f"{path}: calibration key(s) {', '.join(missing)} missing; found {sorted(values)}; required {list(REQUIRED_CALIB_KEYS)}")
    return Calibration(
        P={k: values[k] for k in ("P0", "P1", "P2", "P3") if k in values},
        R0_rect=values["R0_rect"],
        Tr_velo_to_cam=values["Tr_velo_to_cam"],
        Tr_imu_to_velo=values.get("Tr_imu_to_velo"),
    )


def write_calib(path: str | Path, calib: Calibration) -> Path:
    """Write a calibration in the KITTI text format (all seven keys when present)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = {**calib.P, "R0_rect": calib.R0_rect, "Tr_velo_to_cam": calib.Tr_velo_to_cam}
    if calib.Tr_imu_to_velo is not None:
        rows["Tr_imu_to_velo"] = calib.Tr_imu_to_velo
    lines = [f"{key}: " + " ".join(f"{v:.12e}" for v in np.asarray(rows[key]).ravel()) for key in CALIB_SHAPES if key in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass(frozen=True)
class KittiObject:
    """One line of a ``label_2`` file (or of a result file, which adds ``score``).

    Attributes:
        type: one of `KITTI_TYPES`.
        truncated: 0 (fully in the image) .. 1 (leaving the image).
        occluded: 0 visible, 1 partly, 2 largely occluded, 3 unknown.
        alpha: observation angle in [-pi, pi].
        bbox: (left, top, right, bottom) 2D box in pixels.
        dimensions: (h, w, l) in metres.
        location: (x, y, z) bottom centre in rectified camera 0 coordinates (y down), metres.
        rotation_y: yaw about the camera Y axis in [-pi, pi].
        score: detection confidence (result files only).
    """

    type: str
    truncated: float
    occluded: int
    alpha: float
    bbox: tuple[float, float, float, float]
    dimensions: tuple[float, float, float]
    location: tuple[float, float, float]
    rotation_y: float
    score: float | None = None

    def to_line(self) -> str:
        fields = [self.type, f"{self.truncated:.2f}", str(int(self.occluded)), f"{self.alpha:.2f}",
                  *(f"{v:.2f}" for v in self.bbox), *(f"{v:.2f}" for v in self.dimensions),
                  *(f"{v:.2f}" for v in self.location), f"{self.rotation_y:.2f}"]
        if self.score is not None:
            fields.append(f"{self.score:.4f}")
        return " ".join(fields)


def parse_label_line(line: str, where: str = "<line>") -> KittiObject:
    """Parse one label line (15 fields, or 16 with a score).

    Raises:
        ValueError: wrong number of fields, unknown type, or a non-numeric field.
    """
    parts = line.split()
    if len(parts) not in (15, 16):
        raise ValueError(f"{where}: a KITTI label line has 15 fields (16 with a score); found {len(parts)} in {line.strip()[:80]!r}")
    if parts[0] not in KITTI_TYPES:
        raise ValueError(f"{where}: unknown object type {parts[0]!r}; accepted types are {', '.join(KITTI_TYPES)}")
    try:
        v = [float(x) for x in parts[1:]]
    except ValueError:
        raise ValueError(f"{where}: non-numeric field in {line.strip()[:80]!r}") from None
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{where}: NaN or inf in {line.strip()[:80]!r}")
    if v[1] not in (-1, 0, 1, 2, 3):
        raise ValueError(f"{where}: occluded is {v[1]:g}; accepted 0, 1, 2, 3 (-1 for DontCare)")
    if parts[0] != "DontCare" and (min(v[7:10]) <= 0 or v[5] < v[3] or v[6] < v[4]):
        raise ValueError(f"{where}: {parts[0]} with dimensions {v[7:10]} or 2D box {v[3:7]}; dimensions must be > 0 and the box right >= left, bottom >= top")
    return KittiObject(
        type=parts[0], truncated=v[0], occluded=int(v[1]), alpha=v[2], bbox=(v[3], v[4], v[5], v[6]),
        dimensions=(v[7], v[8], v[9]), location=(v[10], v[11], v[12]), rotation_y=v[13],
        score=v[14] if len(v) == 15 else None,
    )


def read_label(path: str | Path) -> list[KittiObject]:
    """Read a ``label_2`` (or result) file; an empty file is a frame without objects."""
    path = Path(path)
    return [parse_label_line(line, f"{path}:{n}") for n, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]


def write_label(path: str | Path, objects: Sequence[KittiObject]) -> Path:
    """Write objects as a ``label_2`` file (with scores: a KITTI result file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(obj.to_line() + "\n" for obj in objects))
    return path


def objects_to_arrays(objects: Sequence[KittiObject]) -> dict[str, np.ndarray]:
    """Stack objects into the column arrays the evaluation uses (OpenPCDet annotation layout).

    Returns:
        name (M,) str, truncated (M,), occluded (M,), alpha (M,), bbox (M, 4), dimensions (M, 3)
        as (l, h, w) like OpenPCDet, location (M, 3), rotation_y (M,), score (M,) (0 when absent).
    """
    m = len(objects)
    return {
        "name": np.array([o.type for o in objects], dtype=object),
        "truncated": np.array([o.truncated for o in objects], dtype=np.float64).reshape(m),
        "occluded": np.array([o.occluded for o in objects], dtype=np.int64).reshape(m),
        "alpha": np.array([o.alpha for o in objects], dtype=np.float64).reshape(m),
        "bbox": np.array([o.bbox for o in objects], dtype=np.float64).reshape(m, 4),
        "dimensions": np.array([(o.dimensions[2], o.dimensions[0], o.dimensions[1]) for o in objects], dtype=np.float64).reshape(m, 3),
        "location": np.array([o.location for o in objects], dtype=np.float64).reshape(m, 3),
        "rotation_y": np.array([o.rotation_y for o in objects], dtype=np.float64).reshape(m),
        "score": np.array([o.score if o.score is not None else 0.0 for o in objects], dtype=np.float64).reshape(m),
    }


def read_image(path: str | Path) -> np.ndarray:
    """Read an ``image_2`` PNG as (H, W, 3) uint8 RGB.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a readable image.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image not found")
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"{path}: not a readable image ({err})") from None


def write_image(path: str | Path, image: np.ndarray) -> Path:
    """Write (H, W, 3) uint8 RGB as PNG."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(path, compress_level=1)
    return path


def check_principal_point(calib: Calibration, image_size: tuple[int, int], where: str) -> None:
    """Raise when P2's principal point lies outside the image (a calib/image mismatch).

    Args:
        image_size: (height, width) in pixels.
    """
    cx, cy = calib.P2[0, 2], calib.P2[1, 2]
    h, w = image_size
    if not (0 <= cx < w and 0 <= cy < h):
        raise ValueError(f"{where}: principal point of P2 ({cx:.1f}, {cy:.1f}) lies outside the {w}x{h} image; the calib file does not belong to this image")
