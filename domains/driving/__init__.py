"""Driving: front camera + spinning LiDAR -> 3D objects, in KITTI format with the KITTI metrics.

Only `mmapps.domain` is imported here; everything else is referenced lazily.
"""

from __future__ import annotations

from mmapps.domain import Domain, ModalitySpec, TaskSpec

_P = "mmapps_domains.driving"

_DEMO_DATA = {
    "classes": ["Car", "Pedestrian", "Cyclist"],
    "point_range": [0.0, -20.48, -3.0, 40.96, 20.48, 1.0],
    "fov_crop": True,
    "image_size": [96, 320],
}

RECIPES = {
    # CPU demo: camera field of view, 0-41 m, 0.32 m pillars, narrow channels.
    "default": {
        "data": {"demo_n": 200, "options": _DEMO_DATA},
        "model": {"fusion": {"name": "painting", "modality_dropout": 0.2},
                  "options": {"pillar_size": 0.32, "pfn_channels": 32, "backbone_channels": [48, 64], "head_channels": 48, "image_channels": 16}},
        "train": {"epochs": 12, "threads": 1, "batch_size": 4, "lr": 0.003, "weight_decay": 0.01, "grad_clip": 10.0, "warmup_fraction": 0.05},
    },
    # Full KITTI (GPU): the OpenPCDet PointPillars range and pillar size, wider network.
    "kitti": {
        "data": {"options": {"classes": ["Car", "Pedestrian", "Cyclist"], "point_range": [0.0, -39.68, -3.0, 69.12, 39.68, 1.0],
                             "fov_crop": True, "image_size": [192, 640], "augment": {"flip": True, "rotation": 0.785, "scale": [0.95, 1.05]}},
                 "num_workers": 4},
        "model": {"fusion": {"name": "painting", "modality_dropout": 0.1},
                  "options": {"pillar_size": 0.16, "pfn_channels": 64, "backbone_channels": [128, 256], "head_channels": 128,
                              "image_channels": 32, "max_detections": 100}},
        "train": {"epochs": 80, "batch_size": 8, "lr": 0.003, "weight_decay": 0.01, "grad_clip": 10.0, "device": "auto"},
    },
    # Under a minute: a handful of frames, one short epoch.
    "smoke": {
        "data": {"demo_n": 12, "options": {**_DEMO_DATA, "image_size": [48, 160], "max_points": 4000}},
        "model": {"fusion": {"name": "painting"},
                  "options": {"pillar_size": 0.64, "pfn_channels": 8, "backbone_channels": [8, 8], "head_channels": 8, "image_channels": 4}},
        "train": {"epochs": 1, "batch_size": 2, "lr": 0.003, "max_steps_per_epoch": 3},
        "eval": {"bootstrap_resamples": 0},
    },
    # About two minutes a run: used by `benchmark` (every fusion x 3 seeds).
    "quick": {
        "data": {"demo_n": 120, "options": _DEMO_DATA},
        "model": {"fusion": {"name": "painting", "modality_dropout": 0.2},
                  "options": {"pillar_size": 0.32, "pfn_channels": 32, "backbone_channels": [48, 64], "head_channels": 48, "image_channels": 16}},
        "train": {"epochs": 10, "batch_size": 4, "lr": 0.003, "weight_decay": 0.01, "grad_clip": 10.0},
    },
}

domain = Domain(
    name="driving",
    description="Camera + LiDAR 3D object detection (PointPillars family, KITTI format and metrics)",
    modalities=(
        ModalitySpec("lidar", "pointcloud", "velodyne .bin / .npy by data.options.point_layout, .pcd, .ply, .las/.laz", layout="packed", optional=False),
        ModalitySpec("camera", "image", "KITTI image_2 PNG, resized to data.options.image_size", layout="fixed", optional=True),
    ),
    tasks=(
        TaskSpec(
            name="objects",
            head="center_heatmap",
            labels=("Car", "Pedestrian", "Cyclist"),
            losses={"heatmap": (f"{_P}.losses:heatmap_focal_loss", 1.0), "box": (f"{_P}.losses:box_regression_loss", 0.25)},
            postprocess=f"{_P}.postprocess:postprocess",
            metrics=f"{_P}.metrics:detection_metrics",
            primary_metric="bev_ap_r40/Car/moderate",
            bootstrap_metric=f"{_P}.metrics:primary_ap_resampler",
        ),
    ),
    build_datasets=f"{_P}.dataset:build_datasets",
    write_demo_data=f"{_P}.demo:write_demo_data",
    recipes=RECIPES,
    fusions=("lidar_only", "painting", "bev"),
    baselines=(),  # the LiDAR-only baseline is the "lidar_only" fusion; the camera alone gives no 3D boxes
    write_predictions=f"{_P}.predictions:write_kitti_results",
    export=f"{_P}.export:make_adapter",
    serve=f"{_P}.serve:add_routes",
    intended_use="offline analysis of recorded drives (3D object detection); not a safety function of a vehicle",
    build_model=f"{_P}.model:build_model",
    report_sections=(f"{_P}.report:kitti_sections",),
    extra_commands=f"{_P}.commands:add_commands",
    data_options=f"{_P}.options:DrivingDataOptions",
    headline_metrics=("*_ap_r40/*/moderate", "bev_ap_r11/*/moderate"),
    install_hint="pip install 'mmapps' (driving needs open3d-cpu and libusb-package)",
    pretrain=f"{_P}.pretrain:pretrain",  # masked pillar blocks -> BEV occupancy; SparK camera patches (docs/pretraining.md#driving)
)
