"""The served endpoints of the other domains: the example plugin through ``predict-files`` (no web code in the
plugin), driving (LiDAR + camera + calib -> KITTI lines) and surveillance (clip + chat -> events).

Scores are checked against the same checkpoint run offline on the same files (`mmapps.workflows.run.predict`
for the plugin, the runner on the domain's own dataset item for the others).
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mmapps.domain import resolve
from mmapps.plugins import get_domain
from mmapps.serve import testkit


def _service(domain, checkpoint: Path, monkeypatch: pytest.MonkeyPatch, **settings):
    from mmapps.serve.app import create_app
    from mmapps.serve.service import build_state
    from mmapps.serve.state import ServiceSettings

    env, predict, _ = testkit.api_keys()
    monkeypatch.setenv("MMAPPS_API_KEYS", env)
    state = build_state(domain, checkpoint, ServiceSettings(decode_workers=1, **settings), version="v1")
    return state, TestClient(create_app(state)), {"Authorization": f"Bearer {predict}"}


def test_plugin_domain_served_through_its_own_readers_and_writer(shapes_domain, shapes_smoke_run, tmp_path, monkeypatch):
    """examples/mmapps-shapes gets /v1/shapes/predict-files from its declared readers and writer, without web code."""
    from mmapps.serve.service import close_state
    from mmapps.workflows.run import predict

    root = resolve(shapes_domain.write_demo_data)(tmp_path / "demo", 6, 3)
    rows = list(csv.DictReader(open(root / "samples.csv")))[:3]
    upload = tmp_path / "upload"
    upload.mkdir()
    for row in rows:
        row["split"] = ""
        if row["image"]:
            (upload / row["image"]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(root / row["image"], upload / row["image"])
    with open(upload / "samples.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    checkpoint = shapes_smoke_run.run_dir / "checkpoints" / "best.safetensors"
    state, client, headers = _service(shapes_domain, checkpoint, monkeypatch, decode_timeout_s=120, request_timeout_s=150)
    try:
        with client:
            files = [("files", (str(p.relative_to(upload)), p.read_bytes())) for p in sorted(upload.rglob("*")) if p.is_file()]
            r = client.post("/v1/shapes/predict-files", files=files, headers=headers)
            assert r.status_code == 200, r.text
            body = r.json()
            bad = client.post("/v1/shapes/predict-files", files=[("files", ("../escape.csv", b"x"))], headers=headers)
            assert bad.status_code == 400 and bad.json()["class"] == "bad_path"
            dicom = client.post("/v1/shapes/predict-files", files=[("files", ("scan.dcm", b"DICM"))], headers=headers)
            assert dicom.status_code == 415 and dicom.json()["class"] == "no_deidentifier"  # never read un-de-identified
    finally:
        close_state(state)
    assert sorted(s["sample_id"] for s in body["samples"]) == sorted(r["sample_id"] for r in rows)
    offline = predict(checkpoint, shapes_domain, upload, tmp_path / "offline", "test", {"cache": {"enabled": False}})
    assert body["prediction_file"]["name"] == Path(offline).name
    served_scores = {s["sample_id"]: s[shapes_domain.primary_task.name]["scores"] for s in body["samples"]}
    for line in Path(offline).read_text().splitlines() if Path(offline).suffix == ".jsonl" else []:
        record = json.loads(line)
        assert served_scores[record["sample_id"]] == pytest.approx(record["scores"], abs=1e-5)


@pytest.mark.slow
def test_driving_frame_served_as_kitti_lines(tmp_path_factory, tmp_path, monkeypatch):
    from mmapps.serve.service import close_state

    domain = get_domain("driving")
    checkpoint = testkit.smoke_checkpoint(domain, testkit.shared_folder(tmp_path_factory))
    root = resolve(domain.write_demo_data)(tmp_path / "demo", 12, 0)
    base = Path(root) / "training"
    frame = sorted(p.stem for p in (base / "velodyne").iterdir())[0]
    files = [("lidar", (f"{frame}.bin", (base / "velodyne" / f"{frame}.bin").read_bytes())),
             ("calib", (f"{frame}.txt", (base / "calib" / f"{frame}.txt").read_bytes())),
             ("camera", (f"{frame}.png", (base / "image_2" / f"{frame}.png").read_bytes()))]
    state, client, headers = _service(domain, checkpoint, monkeypatch, decode_timeout_s=120, request_timeout_s=150)
    try:
        with client:
            r = client.post("/v1/driving/predict", files=files, data={"point_layout": "kitti"}, headers=headers)
            lidar_only = client.post("/v1/driving/predict", files=files[:2], headers=headers)
            wrong = client.post("/v1/driving/predict", files=[("lidar", ("x.xyz", b"1")), files[1]], headers=headers)
    finally:
        close_state(state)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["presence"] == {"camera": True, "lidar": True} and lidar_only.json()["presence"]["camera"] is False
    lines = [line.split() for line in body["kitti"].splitlines() if line and not line.startswith("#")]
    assert len(lines) == len(body["boxes"])
    for fields, box in zip(lines, body["boxes"]):
        assert fields[0] == box["name"] and len(fields) == 16 and float(fields[15]) == pytest.approx(box["score"], abs=1e-4)
    assert wrong.status_code == 400 and ".bin" in wrong.json()["error"]


@pytest.mark.slow
def test_surveillance_clip_and_chat_served_as_events(tmp_path_factory, tmp_path, monkeypatch):
    from mmapps.serve.service import close_state

    domain = get_domain("surveillance")
    checkpoint = testkit.smoke_checkpoint(domain, testkit.shared_folder(tmp_path_factory))
    root = Path(resolve(domain.write_demo_data)(tmp_path / "demo", 4, 0))
    entry = json.loads((root / "manifest.jsonl").read_text().splitlines()[0])
    files = [("clip", ("cam.mp4", (root / entry["clip"]).read_bytes()))]
    if entry.get("chat"):
        files.append(("chat", ("cam" + Path(entry["chat"]).suffix, (root / entry["chat"]).read_bytes())))
    state, client, headers = _service(domain, checkpoint, monkeypatch, decode_timeout_s=150, request_timeout_s=180)
    try:
        with client:
            r = client.post("/v1/surveillance/predict", files=files, headers=headers)
            cut = client.post("/v1/surveillance/predict", files=[("clip", ("cam.mp4", (root / entry["clip"]).read_bytes()[:4000]))], headers=headers)
            again = client.post("/v1/surveillance/predict", files=files, headers=headers)
            # a chat log with wall-clock (ISO-8601) times, as a video management system exports it: placed by start_time
            iso = next(e for e in map(json.loads, (root / "manifest.jsonl").read_text().splitlines()) if str(e.get("chat", "")).endswith(".csv"))
            iso_files = [("clip", ("cam.mp4", (root / iso["clip"]).read_bytes())), ("chat", ("cam.csv", (root / iso["chat"]).read_bytes()))]
            placed = client.post("/v1/surveillance/predict", files=iso_files, data={"start_time": iso["start_time"]}, headers=headers)
            unplaced = client.post("/v1/surveillance/predict", files=iso_files, headers=headers)
            not_iso = client.post("/v1/surveillance/predict", files=iso_files, data={"start_time": "yesterday"}, headers=headers)
            no_chat = client.post("/v1/surveillance/predict", files=files[:1], headers=headers)
            metrics = state.metrics.render()[0].decode()
    finally:
        close_state(state)
    assert no_chat.status_code == 200 and no_chat.json()["presence"]["chat"] is False and no_chat.json()["presence"]["video"], no_chat.text
    assert r.json()["presence"]["chat"] is True
    chat_missing = [float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith("mmapps_input_missing_rate") and 'modality="chat"' in line]
    assert chat_missing and 0.0 < chat_missing[0] < 1.0, chat_missing  # the clip without chat counts as missing chat
    assert placed.status_code == 200 and placed.json()["presence"]["chat"], placed.text
    assert unplaced.status_code == 400 and "start_time form field" in unplaced.json()["error"] and "--on-error" not in unplaced.json()["error"]
    assert not_iso.status_code == 400 and not_iso.json()["class"] == "bad_field" and "start_time" in not_iso.json()["error"]
    assert r.status_code == 200, r.text
    scores = r.json()["predictions"]["events"]["scores"]
    assert scores and all(0.0 <= s <= 1.0 for row in scores for s in row)
    assert cut.status_code == 400 and cut.json()["class"] == "bad_video" and "truncated" in cut.json()["error"]
    import numpy as np

    assert again.status_code == 200
    np.testing.assert_allclose(np.array(again.json()["predictions"]["events"]["scores"]), np.array(scores), atol=1e-6)
