"""``serve --engine ray``: the same app on a local Ray Serve instance with one replica (loopback, token auth).

Ray comes with the test extras: under ``CI=true`` a Ray that cannot start fails this test (a missing
install step shows); elsewhere it is skipped with the reason (e.g. a machine too loaded for Ray's
30-second raylet start-up wait). Ray start-up dominates the test's time (printed).
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import httpx
import pytest

from mmapps.serve import ray_engine, testkit


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_options_are_checked():
    from mmapps.errors import ConfigError

    for bad in (ray_engine.RayOptions(min_replicas=3, max_replicas=2), ray_engine.RayOptions(target_ongoing_requests=0),
                ray_engine.RayOptions(num_cpus=-1)):
        with pytest.raises(ConfigError, match="--"):
            bad.check()
    config = ray_engine.RayOptions(min_replicas=1, max_replicas=4, upscale_delay_s=2, downscale_delay_s=15).autoscaling_config()
    assert config["max_replicas"] == 4 and config["upscale_delay_s"] == 2 and config["downscale_delay_s"] == 15


@pytest.mark.slow
def test_ray_serve_one_replica_serves_the_app(tmp_path_factory, monkeypatch):
    from mmapps_domains.medical import domain

    from mmapps.serve.state import ServiceSettings

    checkpoint = testkit.smoke_checkpoint(domain, testkit.shared_folder(tmp_path_factory))
    keys, predict, admin = testkit.api_keys()
    monkeypatch.setenv("MMAPPS_API_KEYS", keys)  # inherited by the local Ray's replica processes
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    port = free_port()
    audit = tmp_path_factory.mktemp("ray") / "audit.jsonl"
    builder = ray_engine.ReplicaApp("medical", str(checkpoint), ServiceSettings(decode_workers=1, max_batch_size=4), None, str(audit))
    options = ray_engine.RayOptions(port=port, num_cpus=0.5, local_cpus=2, min_replicas=1, max_replicas=1)
    started = time.perf_counter()
    try:
        ray_engine.deploy(builder, options)
    except Exception as err:
        ray_engine.shutdown()
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"Ray Serve could not start on this machine ({type(err).__name__}: {str(err)[:200]})")
    try:
        print(f"Ray start + deployment: {time.perf_counter() - started:.1f} s")
        assert os.environ["RAY_AUTH_MODE"] == "token" and len(os.environ["RAY_AUTH_TOKEN"]) == 64
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(url + "/v2/health/ready", timeout=30).status_code == 200
        root = Path(checkpoint).parent.parent
        from mmapps.train import checkpoint as ckpt

        data_root = Path(ckpt.checkpoint_config(ckpt.read_inference_checkpoint(checkpoint)[1], checkpoint, "medical")["data"]["root"])
        dicom = min(data_root.glob("images/*/*.dcm"))
        r = httpx.post(url + "/v1/medical/predict", headers={"Authorization": f"Bearer {predict}"}, timeout=120,
                       files=[("dicom", (dicom.name, dicom.read_bytes(), "application/dicom"))], data={"note": "INDICATION: cough."})
        assert r.status_code == 200, r.text
        assert {f["label"] for f in r.json()["findings"]} and r.json()["version"]
        assert httpx.post(url + "/v1/medical/predict", timeout=30, files=[("dicom", ("a.dcm", b"x", "application/dicom"))]).status_code == 401
        metrics = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {admin}"}, timeout=30)
        assert metrics.status_code == 200 and 'mmapps_requests_total{endpoint="/v1/medical/predict",status="200"} 1.0' in metrics.text
        assert ray_engine.replica_counts().get("RUNNING") == 1
        assert root.is_dir() and audit.is_file() and predict not in audit.read_text()
    finally:
        ray_engine.shutdown()
