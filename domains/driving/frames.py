"""Indexing a KITTI-layout folder: every frame the data root names is used or reported with its reason.

A frame is named by a LiDAR file, a label or image file, or a line of an ``ImageSets`` list. Each
named frame is validated (LiDAR file present, readable and fitting the point layout; calib keys;
label fields; a decodable image whose size matches P2) or reported to the `IssueLog`, so the run
summary counts every input that was not used, by reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mmapps_domains.driving.kitti import check_principal_point, read_calib, read_label
from mmapps_domains.driving.layouts import PointLayout
from mmapps_domains.driving.points import POINT_SUFFIXES, find_point_file, read_points

from mmapps.data import IssueLog
from mmapps.data.issues import SampleIssue


@dataclass(frozen=True)
class FrameFiles:
    frame_id: str
    points: Path
    calib: Path
    image: Path | None
    label: Path | None


def named_frames(base: Path) -> dict[str, str]:
    """Frame id -> the first file naming it, over ``velodyne``, ``label_2`` and ``image_2`` of `base`."""
    named: dict[str, str] = {}
    for sub in ("velodyne", "label_2", "image_2"):
        folder = base / sub
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                if path.is_file() and not path.name.startswith("."):
                    named.setdefault(path.stem, f"{sub}/{path.name}")
    return named


def check_image(path: Path, calib, use_camera: bool) -> None:
    """Raise `ValueError` when the image cannot be decoded or does not belong to the calibration."""
    from PIL import Image, UnidentifiedImageError

    try:
        if use_camera:
            with Image.open(path) as im:
                im.verify()  # walks every chunk (CRC, truncation) without keeping the pixels
        with Image.open(path) as im:
            size = (im.height, im.width)
            if use_camera:
                im.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"{path}: camera image unreadable ({type(err).__name__}: {err})") from None
    check_principal_point(calib, size, str(path))


def index_frames(root: Path, folder: str, options, log: IssueLog, layout: PointLayout | None = None,
                 wanted: Mapping[str, str] | None = None) -> list[FrameFiles]:
    """Validate the frames of ``root/folder``; bad or unreadable frames go to `log` (skipped or stopping the run).

    Args:
        options: validated ``data.options`` (``use_camera``).
        layout: the point layout (default: from ``options.point_layout``).
        wanted: frame id -> where it is listed (an ImageSets file): index exactly these, and
            report the frames found in the folder but not listed. None: every frame found.

    Raises:
        FileNotFoundError: no ``velodyne`` folder.
    """
    from mmapps_domains.driving.layouts import resolve_layout

    layout = layout or resolve_layout(options.point_layout)
    base = Path(root) / folder
    lidar_dir = base / "velodyne"
    if not lidar_dir.is_dir():
        raise FileNotFoundError(f"{lidar_dir}: no velodyne folder; expected the KITTI object layout {base}/{{velodyne,calib,image_2,label_2}}")
    found = named_frames(base)
    if wanted is None:
        wanted = found
    else:
        for frame_id in sorted(set(found) - set(wanted)):  # a choice of the lists, not a failure: counted, never stopping
            log.issues.append(SampleIssue(str(base / found[frame_id]), "not in any ImageSets list: unused"))
    frames = []
    for frame_id in sorted(wanted):
        where = wanted[frame_id]
        points = find_point_file(lidar_dir, frame_id)
        if points is None:
            others = sorted(p.name for p in lidar_dir.glob(f"{frame_id}.*"))
            reason = (f"unsupported point-cloud suffix: {', '.join(others)} (accepted {', '.join(POINT_SUFFIXES)})" if others
                      else f"LiDAR file missing: no {frame_id}{{{','.join(POINT_SUFFIXES)}}} in {lidar_dir} (frame named by {where})")
            log.report(base / frame_id, reason)
            continue
        calib_path, image, label = base / "calib" / f"{frame_id}.txt", base / "image_2" / f"{frame_id}.png", base / "label_2" / f"{frame_id}.txt"
        step = "calibration missing or invalid"  # the summary counts skipped frames by this reason
        try:
            if not calib_path.is_file():
                raise ValueError(f"{calib_path}: calibration file missing for frame {frame_id}")
            calib = read_calib(calib_path)
            step = "label file invalid"
            if label.is_file():
                read_label(label)
            step = "camera image unreadable or not matching the calibration"
            if image.is_file():
                check_image(image, calib, options.use_camera)
            step = "point cloud unreadable or not fitting the point layout"
            read_points(points, layout)
        except (ValueError, OSError) as err:
            log.report(base / frame_id, f"{step}: {err}")
            continue
        frames.append(FrameFiles(frame_id, points, calib_path, image if image.is_file() else None, label if label.is_file() else None))
    return frames
