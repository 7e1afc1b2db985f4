"""``POST /v1/driving/predict``: one LiDAR frame (+ camera image) + KITTI calib -> boxes as KITTI result lines and JSON.

The files are written as a KITTI ``testing/`` frame and read by the driving domain's own readers
(``.bin`` / ``.npy`` by ``point_layout``, ``.pcd``, ``.ply``); the boxes are the domain's own
post-processing, and the KITTI lines its own prediction writer's.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, File, Form, Request, UploadFile

from mmapps.serve.errors import ServeError
from mmapps.serve.state import ServiceState

LIDAR_SUFFIXES = (".bin", ".npy", ".pcd", ".ply")
LAYOUTS = ("kitti", "nuscenes", "waymo")


def add_driving_route(api: APIRouter, state: ServiceState) -> None:
    from mmapps.serve.generic import predictions_file
    from mmapps.serve.pipeline import serve_root
    from mmapps.serve.request_roots import RequestRoot, new_root
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
        root = new_root(state.extra.get("upload_dir"))
        base = root / "testing"
        for folder in ("velodyne", "calib", "image_2"):
            (base / folder).mkdir(parents=True)
        (base / "velodyne" / f"000000{suffix}").write_bytes(await lidar.read())
        (base / "calib" / "000000.txt").write_bytes(await calib.read())
        if camera is not None:
            (base / "image_2" / "000000.png").write_bytes(await camera.read())
        written = RequestRoot(root, reader="mmapps.serve.readers:driving_frames", options={"point_layout": point_layout, "use_camera": camera is not None, "cache_frames": False})
        served = await serve_root(state, request, written, version)
        detections = served.predictions[0].tasks["objects"]
        boxes = [{key: detections[key][i] for key in ("name", "score", "boxes_lidar", "boxes_camera", "bbox", "alpha")} for i in range(len(detections["name"]))]
        return {**answer_header(served, request), "boxes": boxes, "kitti": predictions_file(served)["text"],
                "presence": {m: served.samples[0].inputs.get(m) is not None for m in served.loaded.runner.modalities}}
