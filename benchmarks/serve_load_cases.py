"""Per-domain requests of the serve load test: a good request as multipart and as the in-process call, and the bad-input matrix.

Each `LoadCase` knows its endpoint, builds good payloads from the domain's own demo data (written
here by its ``write_demo_data``, real DICOM / KITTI / MP4 files), turns one payload into the same
`mmapps.serve.request_roots.RequestRoot` its endpoint writes (``domains/<d>/serve.py``
``request_root``: the in-process arm then runs the endpoint's decode -> model -> postprocess path
without HTTP) and lists bad inputs with the status class expected.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Payload = dict[str, Any]  # httpx keyword arguments: files=[...], data={...}


@dataclass
class LoadCase:
    domain: str
    endpoint: str
    payloads: list[Payload]
    to_root: Callable[[Payload, Any], Any]  # (payload, runner) -> RequestRoot
    bad: dict[str, Payload]


def _file(payload: Payload, field: str) -> tuple[str, bytes] | None:
    for name, (filename, data, *_) in payload.get("files", []):
        if name == field:
            return filename, data
    return None


def medical(scratch: Path, n: int, max_body_mb: float) -> LoadCase:
    from mmapps_domains.medical.demo import write_demo_data
    from mmapps_domains.medical.serve import request_root

    root = Path(write_demo_data(scratch / "medical-demo", n, 0))
    payloads = []
    with open(root / "manifest.csv") as handle:
        for row in list(csv.DictReader(handle))[:n]:
            files = [("dicom", (Path(p).name, (root / p).read_bytes(), "application/dicom")) for p in row["dicom_paths"].split(";")]
            note = (root / row["note_path"]).read_text() if row.get("note_path") else row.get("note_text", "")
            payloads.append({"files": files, "data": {"note": note}})

    def to_root(payload: Payload, runner: Any) -> Any:
        dicoms = [data for name, (_, data, *_) in payload["files"] if name == "dicom"]
        return request_root(dicoms, payload["data"].get("note"), None, list(runner.labels["findings"]))

    good, note = payloads[0]["files"][0][1][1], payloads[0]["data"]["note"]
    bad = {
        "corrupt DICOM (random bytes)": {"files": [("dicom", ("a.dcm", os.urandom(4096), "application/dicom"))], "data": {"note": note}},
        "truncated DICOM (first 600 bytes)": {"files": [("dicom", ("a.dcm", good[:600], "application/dicom"))], "data": {"note": note}},
        "PNG named .dcm": {"files": [("dicom", ("a.dcm", b"\x89PNG\r\n\x1a\n" + os.urandom(200), "application/dicom"))], "data": {"note": note}},
        "JSON body instead of multipart": {"json": {"dicom": "x", "note": note}},
        "missing dicom field": {"data": {"note": note}},
        "file under another field name": {"files": [("image", ("a.dcm", good, "application/dicom"))], "data": {"note": note}},
        "no note (image only: served, presence false)": {"files": [("dicom", ("a.dcm", good, "application/dicom"))]},
        f"upload over --max-body-mb {max_body_mb:g}": {"files": [("dicom", ("a.dcm", os.urandom(int((max_body_mb + 1) * 2**20)), "application/dicom"))]},
    }
    return LoadCase("medical", "/v1/medical/predict", payloads, to_root, bad)


def driving(scratch: Path, n: int, max_body_mb: float) -> LoadCase:
    from mmapps_domains.driving.demo import write_demo_data
    from mmapps_domains.driving.serve import request_root

    base = Path(write_demo_data(scratch / "driving-demo", n, 0)) / "training"
    payloads = []
    for frame in sorted(p.stem for p in (base / "velodyne").iterdir())[:n]:
        files = [("lidar", (f"{frame}.bin", (base / "velodyne" / f"{frame}.bin").read_bytes(), "application/octet-stream")),
                 ("calib", (f"{frame}.txt", (base / "calib" / f"{frame}.txt").read_bytes(), "text/plain")),
                 ("camera", (f"{frame}.png", (base / "image_2" / f"{frame}.png").read_bytes(), "image/png"))]
        payloads.append({"files": files, "data": {"point_layout": "kitti"}})

    def to_root(payload: Payload, runner: Any) -> Any:
        lidar, calib, camera = _file(payload, "lidar"), _file(payload, "calib"), _file(payload, "camera")
        return request_root("." + lidar[0].rsplit(".", 1)[-1], lidar[1], calib[1], camera[1] if camera else None, payload["data"]["point_layout"])

    lidar, calib, _camera = payloads[0]["files"]
    bad = {
        "LiDAR of 13 bytes (not float32 x 4 points)": {"files": [("lidar", ("a.bin", os.urandom(13))), calib]},
        "LiDAR suffix .xyz": {"files": [("lidar", ("a.xyz", lidar[1][1])), calib]},
        "missing calib field": {"files": [lidar]},
        "calib of random text": {"files": [lidar, ("calib", ("a.txt", b"P2: not numbers\n"))]},
        "camera of random bytes": {"files": [lidar, calib, ("camera", ("a.png", os.urandom(2048)))]},
        "point_layout 'velodyne64'": {"files": [lidar, calib], "data": {"point_layout": "velodyne64"}},
        "JSON body instead of multipart": {"json": {"lidar": "x"}},
        "no camera (LiDAR only: served, presence false)": {"files": [lidar, calib]},
        f"upload over --max-body-mb {max_body_mb:g}": {"files": [("lidar", ("a.bin", os.urandom(int((max_body_mb + 1) * 2**20)))), calib]},
    }
    return LoadCase("driving", "/v1/driving/predict", payloads, to_root, bad)


def surveillance(scratch: Path, n: int, max_body_mb: float) -> LoadCase:
    from mmapps_domains.surveillance.demo import write_demo_data
    from mmapps_domains.surveillance.serve import request_root

    root = Path(write_demo_data(scratch / "surveillance-demo", n, 0))
    payloads = []
    for line in (root / "manifest.jsonl").read_text().splitlines()[:n]:
        entry = json.loads(line)
        files = [("clip", ("cam" + Path(entry["clip"]).suffix, (root / entry["clip"]).read_bytes(), "video/mp4"))]
        if entry.get("chat"):
            files.append(("chat", ("cam" + Path(entry["chat"]).suffix, (root / entry["chat"]).read_bytes(), "application/json")))
        payloads.append({"files": files, "data": {"start_time": entry["start_time"]} if entry.get("start_time") else {}})  # ISO chat times need it

    def to_root(payload: Payload, runner: Any) -> Any:
        clip, chat = _file(payload, "clip"), _file(payload, "chat")
        suffix = lambda name: "." + name.rsplit(".", 1)[-1]
        return request_root(suffix(clip[0]), clip[1], suffix(chat[0]) if chat else None, chat[1] if chat else None, None,
                            start_time=payload.get("data", {}).get("start_time"))

    clip = payloads[0]["files"][0]
    iso_chat = next((p for p in payloads if p["data"].get("start_time") and any(f[1][0].endswith(".csv") for f in p["files"])), None)
    bad = {
        "truncated MP4 (first 4000 bytes)": {"files": [("clip", ("cam.mp4", clip[1][1][:4000]))]},
        "random bytes named .mp4": {"files": [("clip", ("cam.mp4", os.urandom(8192)))]},
        "clip suffix .avi": {"files": [("clip", ("cam.avi", clip[1][1]))]},
        "chat suffix .exe": {"files": [clip, ("chat", ("cam.exe", b"MZ"))]},
        "missing clip field": {"files": [("chat", ("cam.jsonl", b'{"t": 1, "user": "a", "text": "hi"}\n'))]},
        "JSON body instead of multipart": {"json": {"clip": "x"}},
        "no chat (served, presence false)": {"files": [clip]},
        "start_time not ISO-8601": {"files": [clip], "data": {"start_time": "yesterday"}},
        f"upload over --max-body-mb {max_body_mb:g}": {"files": [("clip", ("cam.mp4", os.urandom(int((max_body_mb + 1) * 2**20))))]},
    }
    if iso_chat is not None:
        bad["chat with ISO times, no start_time"] = {"files": iso_chat["files"]}
    return LoadCase("surveillance", "/v1/surveillance/predict", payloads, to_root, bad)


CASES = {"medical": medical, "driving": driving, "surveillance": surveillance}
