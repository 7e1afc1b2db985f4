"""``serve --engine ray``: the same app on a local Ray Serve instance with one replica (loopback, token auth).

One test starts Ray once, deploys one replica of the medical smoke model and checks, against the
in-process app on the same checkpoint: readiness, one domain prediction, one v2 inference, and
concurrent v2 inferences batched by ``@serve.batch`` with the scores of single requests; then the
security settings of the local instance (token auth, every Ray socket on loopback, no dashboard).

Ray comes with the test extras: under ``CI=true`` a Ray that cannot start fails this test (a
missing install step shows); elsewhere it is skipped with the reason. Ray's start-up waits are
raised through its own settings (`mmapps.serve.ray_engine.RAY_START_ENV`), never by sleeping.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
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


def test_serve_command_line_sets_the_autoscaler(tmp_path, monkeypatch):
    """The CLI's Ray flags reach `RayOptions` (the run itself is replaced: it would start Ray)."""
    from typer.testing import CliRunner

    from mmapps.cli.main import app

    seen = {}
    monkeypatch.setattr(ray_engine, "run", lambda *args, options, **kwargs: seen.setdefault("options", options))
    checkpoint = tmp_path / "best.safetensors"
    checkpoint.write_bytes(b"")
    result = CliRunner().invoke(app, ["medical", "serve", "--checkpoint", str(checkpoint), "--engine", "ray", "--max-replicas", "4",
                                      "--upscale-delay-s", "2", "--downscale-delay-s", "15", "--autoscale-metrics-interval-s", "1",
                                      "--autoscale-look-back-s", "5", "--max-ongoing-requests", "3", "--num-cpus", "0.5"])
    assert result.exit_code == 0, result.output
    config = seen["options"].autoscaling_config()
    assert (config["max_replicas"], config["upscale_delay_s"], config["downscale_delay_s"], config["metrics_interval_s"], config["look_back_period_s"]) == (4, 2, 15, 1, 5)
    assert seen["options"].max_ongoing_requests == 3 and seen["options"].num_cpus == 0.5


def test_ray_application_builder_for_serve_run_and_kuberay(tmp_path):
    from ray.serve import Application

    from mmapps.errors import ConfigError
    from mmapps.serve.ray_replica import ReplicaApp, app_builder

    with pytest.raises(ConfigError, match="checkpoint"):
        app_builder({"domain": "medical"})
    app = app_builder({"domain": "medical", "checkpoint": str(tmp_path / "best.safetensors"), "keys_file": str(tmp_path / "keys")})
    assert isinstance(app, Application)
    (builder,) = app._bound_deployment.init_args
    assert app._bound_deployment.name == ray_engine.DEPLOYMENT
    assert isinstance(builder, ReplicaApp) and builder.keys_file == str(tmp_path / "keys") and builder.domain_name == "medical"


def test_a_failed_start_stops_only_the_ray_processes_it_left():
    import subprocess
    import sys

    import ray

    ray_dir = os.path.dirname(ray.__file__)
    sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
    before = ray_engine._child_pids()
    ours = subprocess.Popen([*sleep, os.path.join(ray_dir, "_private", "workers", "default_worker.py")])  # looks like Ray's
    other = subprocess.Popen(sleep)  # e.g. a decoder child started meanwhile
    try:
        left = ray_engine._child_pids() - before
        assert left == {ours.pid}
        ray_engine._stop_children(left, grace_s=10)
        assert ours.wait(10) is not None and other.poll() is None
    finally:
        for process in (ours, other):
            process.kill()
            process.wait()


def _images(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.random((1, 1, 1, 48, 48), dtype=np.float32) for _ in range(n)]


def _infer_body(image: np.ndarray) -> dict:
    return {"inputs": [{"name": "image", "shape": list(image.shape), "datatype": "FP32", "data": image.ravel().tolist()},
                       {"name": "note", "shape": [1], "datatype": "BYTES", "data": ["INDICATION: cough."]}]}


def _findings(answer: dict) -> np.ndarray:
    out = next(o for o in answer["outputs"] if o["name"] == "findings")
    return np.asarray(out["data"], dtype=np.float64).reshape(out["shape"])


def _predict(client, dicom: bytes, headers: dict):
    return client.post("/v1/medical/predict", headers=headers, files=[("dicom", ("study.dcm", dicom, "application/dicom"))],
                       data={"note": "INDICATION: cough."})


def _probabilities(answer: dict) -> dict[str, float]:
    return {f["label"]: f["probability"] for f in answer["findings"]}


@pytest.fixture(scope="module")
def dicom(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    from mmapps.domain import resolve
    from mmapps.plugins import get_domain

    root = resolve(get_domain("medical").write_demo_data)(tmp_path_factory.mktemp("demo"), 4, 0)
    return min(Path(root).rglob("*.dcm")).read_bytes()


def _in_process(checkpoint: Path, settings, dicom: bytes, images: list[np.ndarray], headers: dict, folder: Path):
    """The reference: the one-process app on the same checkpoint (TestClient)."""
    from fastapi.testclient import TestClient

    from mmapps.plugins import get_domain
    from mmapps.serve.app import create_app
    from mmapps.serve.service import build_state, close_state

    state = build_state(get_domain("medical"), checkpoint, settings, audit_path=folder / "in-process-audit.jsonl")
    try:
        with TestClient(create_app(state)) as client:
            predicted = _predict(client, dicom, headers)
            assert predicted.status_code == 200, predicted.text
            inferred = [client.post("/v2/models/medical/infer", json=_infer_body(im), headers=headers) for im in images]
            assert all(r.status_code == 200 for r in inferred), [r.text for r in inferred]
            return _probabilities(predicted.json()), [_findings(r.json()) for r in inferred]
    finally:
        close_state(state)


async def _concurrent_infer(url: str, images: list[np.ndarray], headers: dict) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        return await asyncio.gather(*(client.post("/v2/models/medical/infer", json=_infer_body(im), headers=headers) for im in images))


def ray_processes() -> set[int]:
    import psutil

    return {p.pid for p in psutil.Process().children(recursive=True)}


def _listening(pids: set[int]) -> list[tuple[str, str, int]]:
    """(process name, address, port) of every listening socket of ``pids``."""
    import psutil

    found = []
    for c in psutil.net_connections(kind="inet"):
        if c.status == psutil.CONN_LISTEN and c.pid in pids:
            try:
                found.append((psutil.Process(c.pid).name(), c.laddr.ip, c.laddr.port))
            except psutil.NoSuchProcess:
                continue
    return found


def _is_loopback(ip: str) -> bool:
    import ipaddress

    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1, as gRPC binds IPv4 on a dual-stack socket
    return (mapped or address).is_loopback


def _http_answer(port: int) -> int | None:
    """Status of a Jobs API submission (``POST /api/jobs/``) on ``port``, None where no HTTP server answers."""
    try:
        return httpx.post(f"http://127.0.0.1:{port}/api/jobs/", json={"entrypoint": "true"}, timeout=2).status_code
    except httpx.HTTPError:
        return None


@pytest.mark.slow
def test_ray_serve_one_replica_serves_the_app(tmp_path_factory, monkeypatch, dicom):
    from mmapps.plugins import get_domain
    from mmapps.serve.ray_replica import ReplicaApp
    from mmapps.serve.state import ServiceSettings

    checkpoint = testkit.smoke_checkpoint(get_domain("medical"), testkit.shared_folder(tmp_path_factory))
    keys, predict, admin = testkit.api_keys()
    monkeypatch.setenv("MMAPPS_API_KEYS", keys)  # inherited by the local Ray's replica processes
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS"):
        monkeypatch.setenv(name, "")  # recorded, so that teardown removes what start_ray sets
        monkeypatch.delenv(name)
    folder = tmp_path_factory.mktemp("ray")
    headers = {"Authorization": f"Bearer {predict}"}
    settings = ServiceSettings(decode_workers=1, max_batch_size=4, max_batch_delay_ms=200, rate_per_key=0)
    images = _images(4)
    pool = ThreadPoolExecutor(1)  # the in-process reference runs while Ray starts (Ray's start-up mostly waits)
    in_process = pool.submit(_in_process, checkpoint, settings, dicom, images, headers, folder)

    port = free_port()
    audit = folder / "audit.jsonl"
    builder = ReplicaApp("medical", str(checkpoint), settings, None, str(audit), loopback=True)
    options = ray_engine.RayOptions(port=port, num_cpus=0.5, local_cpus=2, min_replicas=1, max_replicas=1, max_ongoing_requests=8)
    started = time.perf_counter()
    try:
        ray_engine.deploy(builder, options)
    except Exception as err:
        ray_engine.shutdown()
        in_process.result()
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"Ray Serve could not start on this machine ({type(err).__name__}: {str(err)[:300]})")
    try:
        print(f"Ray start + deployment: {time.perf_counter() - started:.1f} s")
        reference, reference_infer = in_process.result()
        started = time.perf_counter()
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(url + "/v2/health/ready", timeout=30).status_code == 200
        assert ray_engine.replica_counts() == {"RUNNING": 1}

        served = _predict(httpx.Client(base_url=url, timeout=60), dicom, headers)
        assert served.status_code == 200, served.text
        probabilities = _probabilities(served.json())
        assert probabilities.keys() == reference.keys() and served.json()["version"]
        np.testing.assert_allclose([probabilities[k] for k in sorted(reference)], [reference[k] for k in sorted(reference)], atol=1e-5)

        single = httpx.post(url + "/v2/models/medical/infer", json=_infer_body(images[0]), headers=headers, timeout=60)
        assert single.status_code == 200, single.text
        np.testing.assert_allclose(_findings(single.json()), reference_infer[0], atol=1e-5)

        batched = asyncio.run(_concurrent_infer(url, images, headers))  # @serve.batch: one replica, 200 ms to gather
        assert all(r.status_code == 200 for r in batched), [r.text for r in batched]
        for answer, expected in zip(batched, reference_infer, strict=True):
            np.testing.assert_allclose(_findings(answer.json()), expected, atol=1e-5)
        metrics = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {admin}"}, timeout=30).text
        sizes = [line for line in metrics.splitlines() if line.startswith("mmapps_batch_size_sum")]
        count = [line for line in metrics.splitlines() if line.startswith("mmapps_batch_size_count")]
        assert sizes and count and float(sizes[0].split()[-1]) > float(count[0].split()[-1]), (sizes, count)  # some batch held > 1

        assert httpx.post(url + "/v1/medical/predict", timeout=30, files=[("dicom", ("a.dcm", b"x", "application/dicom"))]).status_code == 401
        assert 'mmapps_requests_total{endpoint="/v1/medical/predict",status="200"} 1.0' in metrics
        assert audit.is_file() and predict not in audit.read_text()

        assert os.environ["RAY_AUTH_MODE"] == "token" and len(os.environ["RAY_AUTH_TOKEN"]) == 64
        listening = _listening(ray_processes())
        assert {name for name, _, _ in listening} >= {"gcs_server", "raylet"}, listening
        outside = [(name, ip, port) for name, ip, port in listening if not _is_loopback(ip)]
        assert not outside, outside  # GCS, raylet, agents, workers, proxy: loopback only
        answers = {port: _http_answer(port) for _, _, port in listening}
        assert not [port for port, status in answers.items() if status is not None and status < 300], answers  # no job is accepted
        assert 401 in answers.values(), answers  # Ray's HTTP agents refuse a caller without the token
        print(f"requests and checks: {time.perf_counter() - started:.1f} s")
    finally:
        ray_engine.shutdown()
        pool.shutdown()
