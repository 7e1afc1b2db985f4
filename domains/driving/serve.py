"""The driving domain's served endpoint (its ``Domain.serve`` hook): ``POST /v1/driving/predict``.

One LiDAR frame (+ camera image) + KITTI calib -> boxes as KITTI result lines and JSON. The files
are written as a KITTI ``testing/{velodyne,image_2,calib}/000000.*`` frame (`request_root`) and
read in a decoder child by `read_frames`, the domain's own frame index and dataset (``.bin`` /
``.npy`` by ``point_layout``, ``.pcd``, ``.ply``); the boxes are the domain's own
post-processing, and the KITTI lines its own prediction writer's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, File, Form, Request, UploadFile

from mmapps.serve.errors import ServeError
from mmapps.serve.request_roots import RequestRoot, new_root
from mmapps.serve.state import ServiceState

LIDAR_SUFFIXES = (".bin", ".npy", ".pcd", ".ply")
LAYOUTS = ("kitti", "nuscenes", "waymo")


def read_frames(cfg: Any, root: Path) -> list[Any]:
    """The decoder-side reader: KITTI ``testing/`` frames (unlabelled, no split lists), as the ``test_folder=testing`` option reads them."""
    from mmapps_domains.driving.dataset import (
        KittiDetectionDataset,
        data_options,
        index_frames,
    )
    from mmapps_domains.driving.layouts import resolve_layout

    from mmapps.data import IssueLog

    options = data_options(cfg)
    frames = index_frames(Path(root), "testing", options, IssueLog(on_error="stop"), resolve_layout(options.point_layout))
    dataset = KittiDetectionDataset(frames, options, train=False, seed=cfg.seed)
    return [dataset[i] for i in range(len(dataset))]


def request_root(lidar_suffix: str, lidar: bytes, calib: bytes, camera: bytes | None, point_layout: str, base: Path | None = None) -> RequestRoot:
    """One frame as a KITTI ``testing/`` folder, read by `read_frames`."""
    root = new_root(base)
    frame = root / "testing"
    for folder in ("velodyne", "calib", "image_2"):
        (frame / folder).mkdir(parents=True)
    (frame / "velodyne" / f"000000{lidar_suffix}").write_bytes(lidar)
    (frame / "calib" / "000000.txt").write_bytes(calib)
    if camera is not None:
        (frame / "image_2" / "000000.png").write_bytes(camera)
    return RequestRoot(root, reader=f"{__name__}:read_frames", options={"point_layout": point_layout, "use_camera": camera is not None, "cache_frames": False})


def add_routes(api: APIRouter, state: ServiceState) -> None:
    """``Domain.serve``: add ``POST /v1/driving/predict`` to the service's predict router."""
    from mmapps.serve.generic import predictions_file
    from mmapps.serve.pipeline import presence, serve_root
    from mmapps.serve.routes_predict import VERSION_QUERY, answer_header

    state.extra.setdefault("multipart_routes", set()).add("/v1/driving/predict")

    @api.post("/v1/driving/predict", summary="3D boxes of one LiDAR frame (+ camera) in KITTI result format and JSON",
              openapi_extra={"requestBody": {"content": {"multipart/form-data": {"example": {"lidar": "<000042.bin>", "calib": "<000042.txt>", "camera": "<000042.png>", "point_layout": "kitti"}}}}})
    async def predict(request: Request,
                      lidar: UploadFile = File(..., description=f"the point cloud: {', '.join(LIDAR_SUFFIXES)} (by its file name's suffix)"),
                      calib: UploadFile = File(..., description="the KITTI calib/*.txt of the frame (P2, R0_rect, Tr_velo_to_cam)"),
                      camera: UploadFile | None = File(None, description="the left colour image (image_2/*.png); omit it and the model runs LiDAR-only"),
                      point_layout: str = Form("kitti", description=f"layout of .bin/.npy points: {', '.join(LAYOUTS)}"),
                      version: str | None = VERSION_QUERY) -> dict[str, Any]:
        suffix = "." + (lidar.filename or "").rsplit(".", 1)[-1].lower() if "." in (lidar.filename or "") else ""
        if suffix not in LIDAR_SUFFIXES:
            raise ServeError(400, "bad_field", f"lidar: file name suffix {suffix or '(none)'!r}; accepted {', '.join(LIDAR_SUFFIXES)}")
        if point_layout not in LAYOUTS:
            raise ServeError(400, "bad_field", f"point_layout: expected one of {', '.join(LAYOUTS)}")
        written = request_root(suffix, await lidar.read(), await calib.read(), await camera.read() if camera is not None else None,
                               point_layout, state.extra.get("upload_dir"))
        served = await serve_root(state, request, written, version)
        detections = served.predictions[0].tasks["objects"]
        boxes = [{key: detections[key][i] for key in ("name", "score", "boxes_lidar", "boxes_camera", "bbox", "alpha")} for i in range(len(detections["name"]))]
        return {**answer_header(served, request), "boxes": boxes, "kitti": predictions_file(served)["text"],
                "presence": presence(served.samples[0], served.loaded.runner)}
