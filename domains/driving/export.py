"""The driving detector as an ONNX graph (``Domain.export``), and the runtime that drives it.

The boundary: reading the LiDAR file, cropping and `pillarise` (grouping points into pillars, a
sort-free key computation with a data-dependent number of pillars) run before the graph, in numpy
(`pillarise_numpy`, equal to the torch `pillarise`); everything after it is in the graph:

    lidar_point_features (P, 9) ─┐
    lidar_pillar_of_point (P,)  ─┼─ PFN -> ScatterElements(max) per pillar -> ScatterND to the BEV canvas
    lidar_pillar_coords (Q, 3)  ─┘      -> [painting / bev camera fusion] -> BEV backbone -> centre head
    camera (B, 3, H, W), camera_present (B,) bool, lidar_to_image (B, 3, 4) per-sample calibration

Inputs are flat over the batch (P points and Q pillars of all frames together; ``pillar_coords[:, 0]``
is the frame of each pillar), so pillar counts are ragged and Triton's config has ``max_batch_size: 0``.
An absent camera is full-shape zeros with ``camera_present`` False (the image is zeroed in the graph
before the image net, so any value in an absent slot changes nothing); the calibration matrices are
inputs, never constants. The outputs are the head's heatmap logits and box regression; decoding
(peaks, boxes) and per-class rotated BEV NMS run in mmapps' post-processing (`postprocess.postprocess`),
on the onnxruntime outputs exactly as on PyTorch's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mmapps.export.spec import BATCH_AXIS, TensorSpec

RUNTIME_REF = "mmapps_domains.driving.export:DrivingRuntime"
POINTS, PILLARS = "lidar_points", "lidar_pillars"


def pillarise_numpy(points: np.ndarray, batch_index: np.ndarray, point_range: tuple[float, ...], pillar_size: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`preprocess.pillarise` in numpy: (features (P, 9) float32, pillar_of_point (P,) int64, coords (Q, 3) int64).

    Pillars are ordered by (frame, row, column) as in the torch version; means are taken in float64
    and rounded to float32 (the torch version sums in float32: differences of ~1e-7 m).
    """
    x_min, y_min, z_min, x_max, y_max, z_max = (float(v) for v in point_range)
    nx = round((x_max - x_min) / pillar_size)
    ny = round((y_max - y_min) / pillar_size)
    pts = np.asarray(points, np.float32)[:, :4]
    ix = np.floor((pts[:, 0] - np.float32(x_min)) / np.float32(pillar_size)).astype(np.int64)
    iy = np.floor((pts[:, 1] - np.float32(y_min)) / np.float32(pillar_size)).astype(np.int64)
    keep = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny) & (pts[:, 2] >= z_min) & (pts[:, 2] < z_max)
    pts, ix, iy, b = pts[keep], ix[keep], iy[keep], np.asarray(batch_index, np.int64)[keep]
    key = (b * ny + iy) * nx + ix
    unique_keys, inverse = np.unique(key, return_inverse=True)
    inverse = inverse.reshape(-1)
    count = np.maximum(np.bincount(inverse, minlength=unique_keys.size), 1)
    mean = np.stack([np.bincount(inverse, weights=pts[:, j].astype(np.float64), minlength=unique_keys.size) / count for j in range(3)], 1).astype(np.float32)  # (Q, 3)
    centre_x = (ix.astype(np.float32) + np.float32(0.5)) * np.float32(pillar_size) + np.float32(x_min)
    centre_y = (iy.astype(np.float32) + np.float32(0.5)) * np.float32(pillar_size) + np.float32(y_min)
    features = np.concatenate([pts, pts[:, :3] - mean[inverse], (pts[:, 0] - centre_x)[:, None], (pts[:, 1] - centre_y)[:, None]], 1)  # (P, 9)
    coords = np.stack([unique_keys // (ny * nx), (unique_keys // nx) % ny, unique_keys % nx], 1).astype(np.int64)  # (Q, 3)
    return features.astype(np.float32), inverse.astype(np.int64), coords


class DrivingGraph(nn.Module):
    """`DrivingDetector.detect` with flat tensor inputs (the `driving_inputs` order) and (heatmap, regression) outputs.

    Args:
        detector: an eval-mode `mmapps_domains.driving.model.DrivingDetector`.
    """

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector
        self.uses_camera = detector.image_net is not None

    def forward(self, *values: Tensor) -> tuple[Tensor, Tensor]:
        """Inputs in `driving_inputs` order: point features, pillar of point, pillar coords, lidar_to_image[, camera, camera_present]."""
        point_features, pillar_of_point, pillar_coords, lidar_to_image = values[:4]
        if not self.uses_camera:
            present = torch.zeros(lidar_to_image.shape[0], dtype=torch.bool, device=lidar_to_image.device)
            return self.detector.detect(point_features, pillar_of_point, pillar_coords, lidar_to_image, None, present)
        camera, camera_present = values[4:6]
        image = torch.where(camera_present.view(-1, 1, 1, 1), camera, torch.zeros_like(camera))  # (B, 3, H, W): absent slots are zeros
        return self.detector.detect(point_features, pillar_of_point, pillar_coords, lidar_to_image, image, camera_present)


def driving_inputs(detector: nn.Module) -> list[TensorSpec]:
    """The graph inputs: pillars (flat over the batch), calibration, and the camera when the fusion uses it."""
    specs = [
        TensorSpec("lidar_point_features", "float32", (POINTS, 9), "lidar", "data", description="pillarise: x, y, z, intensity, offsets to the pillar's point mean (3) and centre (2)"),
        TensorSpec("lidar_pillar_of_point", "int64", (POINTS,), "lidar", "offsets", description="row of each point's pillar in lidar_pillar_coords"),
        TensorSpec("lidar_pillar_coords", "int64", (PILLARS, 3), "lidar", "offsets", description="frame index, BEV row, BEV column of each non-empty pillar"),
        TensorSpec("lidar_to_image", "float32", (BATCH_AXIS, 3, 4), None, "meta", description="per-frame LiDAR -> model-image pixel projection (calibration, never frozen)"),
    ]
    if detector.image_net is not None:
        h, w = detector.image_size
        specs += [
            TensorSpec("camera", "float32", (BATCH_AXIS, 3, h, w), "camera", "data", description="normalised front image; zeros where absent"),
            TensorSpec("camera_present", "bool", (BATCH_AXIS,), "camera", "present", description="False where the frame has no image"),
        ]
    return specs


def driving_outputs(detector: nn.Module) -> list[TensorSpec]:
    ny, nx = detector.grid
    k = len(detector.classes)
    return [
        TensorSpec("objects_heatmap", "float32", (BATCH_AXIS, k, ny // 2, nx // 2), role="output", task="objects", description=f"centre heatmap logits ({', '.join(detector.classes)})"),
        TensorSpec("objects_regression", "float32", (BATCH_AXIS, 8, ny // 2, nx // 2), role="output", task="objects", description="offset x, offset y, z, log l, log w, log h, sin, cos heading"),
    ]


class DrivingRuntime:
    """`GraphRuntime` of the driving graph: a collated `Batch` -> pillarised numpy inputs; outputs -> ``{"objects": ...}``.

    Args:
        preprocess: the sidecar's ``preprocess`` section (written by `DrivingExport.preprocess`).
        folder: the export folder (unused: nothing but the sidecar is needed).
    """

    def __init__(self, preprocess: dict[str, Any], folder: Path | None = None, **_: Any) -> None:
        self.inputs = [TensorSpec.from_json(s) for s in preprocess["inputs"]]
        self.point_range = tuple(preprocess["point_range"])
        self.pillar_size = float(preprocess["pillar_size"])
        self.grid, self.decode = preprocess["grid"], preprocess["decode"]

    def feeds(self, batch: Any) -> dict[str, np.ndarray]:
        lidar = batch.inputs["lidar"]
        points = _numpy(lidar.data).astype(np.float32, copy=False)
        offsets = _numpy(lidar.offsets).astype(np.int64)
        batch_index = np.repeat(np.arange(len(batch), dtype=np.int64), np.diff(offsets))  # (P,)
        features, pillar_of_point, coords = pillarise_numpy(points, batch_index, self.point_range, self.pillar_size)
        feeds = {"lidar_point_features": features, "lidar_pillar_of_point": pillar_of_point, "lidar_pillar_coords": coords,
                 "lidar_to_image": np.asarray([m["lidar_to_image"] for m in batch.meta], np.float32).reshape(len(batch), 3, 4)}
        names = {s.name: s for s in self.inputs}
        if "camera" in names:
            cam = batch.inputs.get("camera")
            if cam is None or cam.data is None:
                feeds["camera"] = np.zeros((len(batch), *names["camera"].shape[1:]), np.float32)
                feeds["camera_present"] = np.zeros(len(batch), bool)
            else:
                feeds["camera"] = _numpy(cam.data).astype(np.float32, copy=False)
                feeds["camera_present"] = _numpy(cam.present).astype(bool)
        return feeds

    def model_outputs(self, outputs: dict[str, np.ndarray], batch: Any) -> dict[str, Any]:
        grid = {**self.grid, "classes": tuple(self.grid["classes"])}
        return {"objects": {"heatmap": torch.from_numpy(np.ascontiguousarray(outputs["objects_heatmap"])),
                            "regression": torch.from_numpy(np.ascontiguousarray(outputs["objects_regression"])), "grid": grid, "decode": dict(self.decode)}}


class DrivingExport:
    """`mmapps.export.adapter.ExportAdapter` of the driving detector (every fusion).

    Args:
        model: the eval-mode `DrivingDetector` with the checkpoint's weights.
    """

    runtime = RUNTIME_REF
    # Triton: max_batch_size 0 (ragged pillars: the batch is inside the flat point and pillar axes), which
    # `mmapps.export.triton.triton_config` chooses because the point and pillar inputs have no batch axis

    def __init__(self, model: nn.Module) -> None:
        self.detector = model
        self.inputs = driving_inputs(model)
        self.outputs = driving_outputs(model)
        self.module = DrivingGraph(model).eval()
        self._runtime = DrivingRuntime(self.preprocess(None))

    def example(self, batch: Any) -> tuple[Tensor, ...]:
        if len(batch) < 2:
            raise ValueError("driving export: tracing needs a batch of at least 2 frames (exporters specialise a batch of 1)")
        feeds = self._runtime.feeds(batch)
        return tuple(torch.from_numpy(feeds[s.name]) for s in self.inputs)

    def preprocess(self, folder: Path | None) -> dict[str, Any]:
        d = self.detector
        grid = {"x_min": d.point_range[0], "y_min": d.point_range[1], "cell": 2 * d.options.pillar_size, "classes": list(d.classes)}
        decode = {"max_detections": d.options.max_detections, "score_threshold": d.options.score_threshold, "nms_iou": d.options.nms_iou}
        return {"inputs": [s.to_json() for s in self.inputs], "point_range": list(d.point_range), "pillar_size": d.options.pillar_size,
                "image_size": list(d.image_size), "grid": grid, "decode": decode,
                "boundary": "pillarise (numpy, before the graph); box decoding and rotated BEV NMS in mmapps post-processing"}

    @torch.no_grad()
    def reference(self, model: nn.Module, batch: Any) -> dict[str, np.ndarray]:
        out = model(batch)["objects"]
        return {"objects_heatmap": out["heatmap"].float().cpu().numpy(), "objects_regression": out["regression"].float().cpu().numpy()}


def make_adapter(model: nn.Module, cfg: Any = None, domain: Any = None, example: Any = None) -> DrivingExport:
    """``Domain.export`` of the driving domain."""
    return DrivingExport(model)


def _numpy(value: Any) -> np.ndarray:
    return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
