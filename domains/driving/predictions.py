"""KITTI result files (label_2 format with a score column), readable by the official devkit,
OpenPCDet and MMDetection3D tools."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from mmapps_domains.driving.kitti import KittiObject, write_label


def detections_to_objects(prediction: dict[str, Any]) -> list[KittiObject]:
    """A postprocessed detection dict -> `KittiObject`s (truncation and occlusion unknown: -1)."""
    objects = []
    for name, score, cam, bbox, alpha in zip(prediction["name"], prediction["score"], prediction["boxes_camera"], prediction["bbox"], prediction["alpha"]):
        x, y, z, h, w, l, ry = cam
        objects.append(KittiObject(name, -1.0, -1, float(alpha), tuple(float(v) for v in bbox), (h, w, l), (x, y, z), float(ry), float(score)))
    return objects


def write_kitti_results(records: Mapping[str, Sequence[Any]] | Sequence[Any], out_dir: Path) -> Path:
    """Write one ``<frame_id>.txt`` per record under ``out_dir/kitti_results`` and return that folder.

    Args:
        records: task -> `PredictionRecord`s (the ``objects`` task is written), or the records themselves.
        out_dir: run (or prediction) directory.
    """
    if isinstance(records, Mapping):
        records = records.get("objects", [])
    folder = Path(out_dir) / "kitti_results"
    folder.mkdir(parents=True, exist_ok=True)
    for record in records:
        write_label(folder / f"{record.sample_id}.txt", detections_to_objects(record.prediction))
    return folder
