"""The PointPillars-family detector with optional camera fusion, built by ``build_model(cfg, domain)``.

    lidar (packed) -> pillarise -> [painting: + image features per point] -> PillarFeatureNet
      -> BEV pseudo-image -> [bev: + image features per cell] -> BEVBackbone -> CenterHead

Fusion strategies (``cfg.model.fusion.name``): ``lidar_only``, ``painting``, ``bev``. They are
spatial (per point / per BEV cell) and do not fit the core FUSIONS contract (modality dict ->
pooled vector), so they are built here and listed in ``Domain.fusions``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mmapps.data import Batch
from mmapps_domains.driving.bev_backbone import BEVBackbone, CenterHead
from mmapps_domains.driving.camera_fusion import ImageFeatureNet, bev_image_features, paint_points
from mmapps_domains.driving.options import DrivingDataOptions, DrivingModelOptions, parse_options
from mmapps_domains.driving.pillar_encoder import PillarFeatureNet
from mmapps_domains.driving.preprocess import Pillars, grid_shape, pillarise

FUSION_NAMES: tuple[str, ...] = ("lidar_only", "painting", "bev")


class DrivingDetector(nn.Module):
    """LiDAR (+ camera) 3D detector.

    Args:
        data: validated data options (classes, point range, model image size).
        options: validated model options.
        fusion: one of `FUSION_NAMES`.
        camera_dropout: probability of hiding a present camera per training sample, so the model
            also learns to detect without the image.
    """

    def __init__(self, data: DrivingDataOptions, options: DrivingModelOptions, fusion: str = "lidar_only", camera_dropout: float = 0.0) -> None:
        super().__init__()
        if fusion not in FUSION_NAMES:
            from mmapps.errors import ConfigError

            raise ConfigError(f"model.fusion.name {fusion!r} is not a driving fusion; choose one of {', '.join(FUSION_NAMES)}")
        self.classes = tuple(data.classes)
        self.point_range = tuple(data.point_range)
        self.image_size = tuple(data.image_size)
        self.options = options
        self.fusion = fusion
        self.camera_dropout = camera_dropout
        self.grid = grid_shape(self.point_range, options.pillar_size)
        ci = options.image_channels
        self.image_net = ImageFeatureNet(ci) if fusion != "lidar_only" else None
        self.pfn = PillarFeatureNet(9 + (ci + 1 if fusion == "painting" else 0), options.pfn_channels)
        bev_in = options.pfn_channels + (ci + 1 if fusion == "bev" else 0)
        self.backbone = BEVBackbone(bev_in, options.backbone_channels, options.head_channels)
        self.head = CenterHead(options.head_channels, len(self.classes), options.head_channels)

    def forward(self, batch: Batch) -> dict[str, Any]:
        """Inputs: a `Batch` with ``lidar`` (packed) and optionally ``camera``; returns ``{"objects": raw head outputs}``."""
        lidar = batch.inputs["lidar"]
        points = lidar.data
        device = points.device
        b = len(batch)
        counts = (lidar.offsets[1:] - lidar.offsets[:-1]).to(device)
        batch_index = torch.repeat_interleave(torch.arange(b, device=device), counts)  # (P,)
        pillars = pillarise(points, batch_index, self.point_range, self.options.pillar_size)
        matrices = torch.tensor([m["lidar_to_image"] for m in batch.meta], dtype=torch.float32, device=device)  # (B, 3, 4)
        cam = batch.inputs.get("camera")
        image, present = None, torch.zeros(b, dtype=torch.bool, device=device)
        if self.image_net is not None and cam is not None and cam.data is not None and bool(cam.present.any()):
            image, present = cam.data.to(device), cam.present.to(device)  # else: the image net is not run at all
            if self.training and self.camera_dropout > 0:
                present = present & (torch.rand(b, device=device) >= self.camera_dropout)
        heatmap, regression = self.detect(pillars.features, pillars.pillar_of_point, pillars.coords, matrices, image, present)
        return {"objects": self.head_outputs(heatmap, regression)}

    def detect(self, point_features: Tensor, pillar_of_point: Tensor, coords: Tensor, lidar_to_image: Tensor,
               image: Tensor | None, present: Tensor) -> tuple[Tensor, Tensor]:
        """Everything after `pillarise`, on tensors only (the exported graph, see ``export.py``).

        Inputs: point_features (P, 9) and pillar_of_point (P,) and coords (Q, 3) from `pillarise`;
        lidar_to_image (B, 3, 4) per-sample projections; image (B, 3, H, W) or None (no image in the
        batch: the image net is skipped, which gives the same outputs as zeros with ``present`` false);
        present (B,) camera presence. Returns heatmap logits (B, K, ny/2, nx/2) and regression (B, 8, ny/2, nx/2).
        """
        features = self.image_net(image) if image is not None and self.image_net is not None else None  # (B, C, H/4, W/4)
        return self.head(self.backbone(self.pseudo_image(point_features, pillar_of_point, coords, lidar_to_image, features, present)))

    def pseudo_image(self, point_features: Tensor, pillar_of_point: Tensor, coords: Tensor, lidar_to_image: Tensor,
                     features: Tensor | None, present: Tensor) -> Tensor:
        """The backbone's input (B, C, ny, nx): pillar features with the camera fused by painting or per BEV cell.

        Inputs as `detect`, with the camera as its feature map (B, C, H/4, W/4) or None (pretraining
        passes the masked camera CNN's features).
        """
        b = lidar_to_image.shape[0]
        ci = self.options.image_channels + 1
        if self.fusion == "painting":
            if features is None:  # no image in the whole batch: the features an absent camera gets
                painted = point_features.new_zeros(point_features.shape[0], ci)
            else:
                painted = paint_points(point_features[:, :3], coords[pillar_of_point, 0], features, lidar_to_image, present, self.image_size)
            point_features = torch.cat([point_features, painted], dim=1)
        bev = self.pfn(point_features, Pillars(point_features, pillar_of_point, coords, pillar_of_point), b, self.grid)  # (B, C, ny, nx)
        if self.fusion == "bev":
            if features is None:
                extra = bev.new_zeros(b, ci, *self.grid)
            else:
                extra = bev_image_features(features, lidar_to_image, present, self.image_size, self.grid,
                                           self.point_range[0], self.point_range[1], self.options.pillar_size, self.options.bev_heights)
            bev = torch.cat([bev, extra], dim=1)
        return bev

    def head_outputs(self, heatmap: Tensor, regression: Tensor) -> dict[str, Any]:
        """The ``objects`` output `postprocess` decodes: head tensors plus the grid and decoding settings."""
        grid = {"x_min": self.point_range[0], "y_min": self.point_range[1], "cell": 2 * self.options.pillar_size, "classes": self.classes}
        decode = {"max_detections": self.options.max_detections, "score_threshold": self.options.score_threshold, "nms_iou": self.options.nms_iou}
        return {"heatmap": heatmap, "regression": regression, "grid": grid, "decode": decode}


def build_model(cfg: Any, domain: Any = None) -> DrivingDetector:
    """Build the detector from ``cfg.data.options``, ``cfg.model.options`` and ``cfg.model.fusion``."""
    data = parse_options(DrivingDataOptions, cfg.data.options, "data.options")
    options = parse_options(DrivingModelOptions, cfg.model.options, "model.options")
    fusion = cfg.model.fusion.name
    if cfg.model.modalities is not None:
        if "lidar" not in cfg.model.modalities:
            from mmapps.errors import ConfigError

            raise ConfigError(f"model.modalities {cfg.model.modalities}: the driving detector needs 'lidar' (the camera alone gives no 3D boxes here); use ['lidar'] for the LiDAR-only baseline")
        if "camera" not in cfg.model.modalities:
            fusion = "lidar_only"
    return DrivingDetector(data, options, fusion, cfg.model.fusion.modality_dropout)
