"""Typed ``data.options`` and ``model.options`` of the driving domain (validated by pydantic)."""

from __future__ import annotations

from typing import Literal, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mmapps_domains.driving.layouts import PRESETS, PointLayoutOptions


class AugmentOptions(BaseModel):
    """Global augmentation applied in training to points, boxes and the camera projection together."""

    model_config = ConfigDict(extra="forbid")
    flip: bool = Field(True, description="mirror the scene about the LiDAR x axis with probability 0.5")
    rotation: float = Field(0.3926, ge=0, description="uniform yaw in [-r, r] radians about the LiDAR z axis")
    scale: tuple[float, float] = Field((0.95, 1.05), description="uniform global scaling range")


class DrivingDataOptions(BaseModel):
    """Domain-specific ``data.options``.

    Attributes:
        classes: detected classes (KITTI names); others are ignored in training.
        point_range: x_min, y_min, z_min, x_max, y_max, z_max of kept points (LiDAR frame, metres).
        fov_crop: keep only points that project into the camera image.
        image_size: (height, width) the camera image is resized to for the model.
        use_camera: read image_2 (False: every sample has camera = None).
        augment: training augmentation; None disables it.
        split_fractions: train / val / test fractions of the seeded split (without ImageSets).
        max_points: random subsample cap per frame (None: keep all).
        min_iou: class -> IoU threshold of the evaluation (default Car 0.7, Pedestrian/Cyclist 0.5).
        cache_frames: keep each frame's cropped points and resized image in memory (off for full KITTI).
        point_layout: the LiDAR files' layout (`layouts.PRESETS` name or `PointLayoutOptions`).
        iou_precision: evaluation IoU in exact float64 (default) or float32 like the python devkits.
        test_folder: "testing" serves KITTI's unlabelled testing/ folder as the test split.
    """

    model_config = ConfigDict(extra="forbid")
    classes: tuple[str, ...] = ("Car", "Pedestrian", "Cyclist")
    point_range: tuple[float, float, float, float, float, float] = (0.0, -20.48, -3.0, 40.96, 20.48, 1.0)
    fov_crop: bool = True
    image_size: tuple[int, int] = (96, 320)
    use_camera: bool = True
    augment: AugmentOptions | None = Field(default_factory=AugmentOptions)
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    max_points: int | None = Field(None, ge=1)
    min_iou: dict[str, float] = Field(default_factory=dict)
    cache_frames: bool = Field(True, description="keep cropped points and resized images in memory after the first read")
    point_layout: str | PointLayoutOptions = Field(
        "kitti", description="LiDAR file layout: preset kitti / nuscenes / waymo, or {preset, fields, dtype, intensity_max, intensity_tanh, axes, ground_z}"
    )
    iou_precision: Literal["float64", "float32"] = Field(
        "float64", description="BEV/3D IoU of the evaluation: exact float64, or float32 as the python KITTI devkits of OpenPCDet / MMDetection3D"
    )
    test_folder: Literal["training", "testing"] = Field(
        "training", description="'testing' serves every frame of KITTI's unlabelled testing/ folder as the test split (for `predict` and benchmark submissions)"
    )

    @field_validator("classes")
    @classmethod
    def _known_classes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from mmapps_domains.driving.kitti import KITTI_TYPES

        bad = [c for c in value if c not in KITTI_TYPES or c == "DontCare"]
        if bad or not value:
            raise ValueError(f"classes {list(bad) or list(value)} not accepted; choose among {[t for t in KITTI_TYPES if t != 'DontCare']}")
        return value

    @field_validator("point_layout")
    @classmethod
    def _known_layout(cls, value: str | PointLayoutOptions) -> str | PointLayoutOptions:
        if isinstance(value, str) and value not in PRESETS:
            raise ValueError(f"point_layout {value!r} is not a preset; choose {', '.join(PRESETS)} or give {{preset, fields, ...}}")
        return value


class DrivingModelOptions(BaseModel):
    """Domain-specific ``model.options`` of the PointPillars-family detector.

    Attributes:
        pillar_size: BEV pillar edge in metres (x and y).
        pfn_channels: pillar feature width.
        backbone_channels: widths of the two down-sampling stages of the BEV backbone.
        head_channels: width of the shared head convolution.
        image_channels: width of the camera CNN features used by the fusions.
        bev_heights: LiDAR-frame heights (m) at which BEV cells are projected into the image ("bev" fusion).
        max_detections: detections kept per frame after NMS.
        score_threshold: minimum detection score.
        nms_iou: rotated BEV IoU above which a lower-scoring box of the same class is suppressed.
    """

    model_config = ConfigDict(extra="forbid")
    pillar_size: float = Field(0.32, gt=0)
    pfn_channels: int = Field(32, ge=4)
    backbone_channels: tuple[int, int] = (64, 96)
    head_channels: int = Field(64, ge=8)
    image_channels: int = Field(24, ge=4)
    bev_heights: tuple[float, ...] = (-1.3, -0.8, -0.3)
    max_detections: int = Field(60, ge=1)
    score_threshold: float = Field(0.05, ge=0, lt=1)
    nms_iou: float = Field(0.1, gt=0, lt=1)


def parse_options(model: type[BaseModel], values: dict[str, Any], where: str) -> Any:
    """Validate an options dict, re-raising errors as one `ConfigError` naming the field."""
    from mmapps.config import validate_options

    return validate_options(model, values, where)