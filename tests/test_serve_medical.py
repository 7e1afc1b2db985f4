"""`mmapps medical serve` in process: every endpoint through TestClient, v2 through tritonclient on a real
uvicorn, auth 401/403/429/413, bad inputs, de-identification and sentinel identifiers, decoder crash, version switch.

One smoke checkpoint is trained per session (shared by xdist workers) and one service per module.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import threading
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from fastapi.testclient import TestClient

from mmapps.plugins import get_domain
from mmapps.serve import testkit

SENTINEL_NAME = "Zyxwvut^Qwertyuiop"
SENTINEL_ID = "MRNSENTINEL0042"
SENTINEL_NOTE = "HISTORY: sentinel-note-text-7731 smoker with cough."


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, monkeypatch_module):
    from mmapps.serve.app import create_app
    from mmapps.serve.service import build_state, close_state
    from mmapps.serve.state import ServiceSettings

    domain = get_domain("medical")
    checkpoint = testkit.smoke_checkpoint(domain, testkit.shared_folder(tmp_path_factory))
    env, predict, admin = testkit.api_keys()
    monkeypatch_module.setenv("MMAPPS_API_KEYS", env)
    folder = tmp_path_factory.mktemp("serve-medical")
    settings = ServiceSettings(max_body_bytes=2 * 2**20, decode_workers=1, max_batch_size=4, max_batch_delay_ms=20, store_inputs=folder / "stored")
    state = build_state(domain, checkpoint, settings, audit_path=folder / "audit.jsonl", version="v1")
    with TestClient(create_app(state)) as client:
        yield {"client": client, "state": state, "predict": {"Authorization": f"Bearer {predict}"}, "admin": {"X-API-Key": admin},
               "checkpoint": checkpoint, "folder": folder, "secrets": (predict, admin)}
    close_state(state)


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="module")
def dicom_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A demo radiograph written by pydicom with sentinel patient identifiers."""
    from mmapps.domain import resolve

    root = resolve(get_domain("medical").write_demo_data)(tmp_path_factory.mktemp("demo"), 4, 0)
    path = sorted(Path(root).rglob("*.dcm"))[0]
    ds = pydicom.dcmread(path)
    ds.PatientName, ds.PatientID = SENTINEL_NAME, SENTINEL_ID
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


def _predict(s, dicoms, note=SENTINEL_NOTE, **fields):
    data = {"note": note, **fields} if note is not None else fields
    return s["client"].post("/v1/medical/predict", files=[("dicom", (f"{SENTINEL_ID}-{i}.dcm", d, "application/dicom")) for i, d in enumerate(dicoms)],
                            data=data, headers=s["predict"])


def test_medical_predict_answers_findings_at_validation_thresholds(served, dicom_bytes):
    r = _predict(served, [dicom_bytes], gradcam="true")
    assert r.status_code == 200, r.text
    body = r.json()
    runner = served["state"].versions.get("v1").runner
    assert body["version"] == "v1" and body["sha256"] == _sha(served["checkpoint"])
    assert [f["label"] for f in body["findings"]] == list(runner.labels["findings"])
    metrics = json.loads((served["checkpoint"].parent.parent / "metrics.json").read_text())
    for f in body["findings"]:
        assert 0.0 <= f["probability"] <= 1.0
        assert f["threshold"] == pytest.approx(metrics[f"threshold/{f['label']}"])
        assert f["decision"] == (f["probability"] >= f["threshold"])
    assert body["presence"] == {"image": True, "note": True}
    png = base64.b64decode(body["gradcam"]["png_base64"])
    from PIL import Image

    image = Image.open(io.BytesIO(png))
    assert image.mode == "L" and image.size == (48, 48)


def test_server_timing_names_the_pipeline_inside_the_server_time(served, dicom_bytes):
    started = time.perf_counter()
    r = _predict(served, [dicom_bytes])
    client_ms = (time.perf_counter() - started) * 1000
    timing = dict(part.strip().split(";dur=") for part in r.headers["server-timing"].split(","))
    assert set(timing) == {"app", "pipeline"}
    assert 0 < float(timing["pipeline"]) <= float(timing["app"]) <= client_ms
    health = served["client"].get("/v2/health/live")
    assert health.headers["server-timing"].startswith("app;dur=") and "pipeline" not in health.headers["server-timing"]


def _sha(path: Path) -> str:
    from mmapps.serve.runner import file_sha256

    return file_sha256(path)


def test_served_scores_equal_the_predict_workflow_on_the_same_study(served, dicom_bytes, tmp_path):
    """The service's decode -> model -> sigmoid path gives the scores `mmapps medical predict` writes."""
    import csv

    from mmapps_domains.medical.serve import request_root as medical_root
    from mmapps.workflows.run import predict

    runner = served["state"].versions.get("v1").runner
    written = medical_root([dicom_bytes], SENTINEL_NOTE, "referral", list(runner.labels["findings"]), tmp_path)
    out = predict(served["checkpoint"], get_domain("medical"), written.root, tmp_path / "out", "test", {"cache": {"enabled": False}})
    row = next(csv.DictReader(open(out)))
    served_scores = {f["label"]: f["probability"] for f in _predict(served, [dicom_bytes], note_kind="referral").json()["findings"]}
    offline = {k.removeprefix("score_").removeprefix("prob_"): float(v) for k, v in row.items() if k.removeprefix("score_").removeprefix("prob_") in served_scores}
    assert offline, f"no score columns in {list(row)}"
    for label, value in offline.items():
        assert served_scores[label] == pytest.approx(value, abs=1e-5)


def test_missing_note_is_served_with_presence_false(served, dicom_bytes):
    r = _predict(served, [dicom_bytes], note=None)
    assert r.status_code == 200 and r.json()["presence"] == {"image": True, "note": False}


def test_auth_401_403_429_and_413(served, dicom_bytes):
    client = served["client"]
    assert client.post("/v1/medical/predict", files=[("dicom", ("a.dcm", dicom_bytes))]).status_code == 401
    wrong = client.post("/v1/medical/predict", files=[("dicom", ("a.dcm", dicom_bytes))], headers={"Authorization": "Bearer not-a-key-at-all-000000000"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert client.get(f"/v1/medical/predict?api_key={served['secrets'][0]}").status_code in (401, 405)  # the query string is never read
    for path in ("/metrics", "/docs", "/openapi.json", "/v1/admin/versions"):
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers=served["predict"]).status_code == 403, path
        assert client.get(path, headers=served["admin"]).status_code == 200, path
    big = client.post("/v1/medical/predict", files=[("dicom", ("a.dcm", b"\0" * (3 * 2**20)))], headers=served["predict"])
    assert big.status_code == 413 and big.json()["class"] == "too_large"
    from mmapps.serve.limits import RateLimiter

    state = served["state"]
    saved, state.limiter = state.limiter, RateLimiter(rate=0.2, burst=2)
    try:
        codes = [client.get("/v2/models/medical", headers=served["predict"]) for _ in range(3)]
    finally:
        state.limiter = saved
    assert [c.status_code for c in codes] == [200, 200, 429]
    assert int(codes[2].headers["retry-after"]) >= 1
    assert client.options("/v1/medical/predict", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}).headers.get("access-control-allow-origin") is None


@pytest.mark.parametrize("case", ["corrupt", "bomb", "truncated", "content_type", "no_file", "bad_note_kind"])
def test_bad_input_is_a_4xx_paragraph_and_the_next_request_succeeds(served, dicom_bytes, case):
    client, headers = served["client"], served["predict"]
    if case == "corrupt":
        r = _predict(served, [b"this is not a DICOM file" * 40])
    elif case == "bomb":  # a header claiming 60000 x 60000 pixels: refused before any decode
        ds = pydicom.dcmread(io.BytesIO(dicom_bytes))
        ds.Rows, ds.Columns = 60000, 60000
        buffer = io.BytesIO()
        ds.save_as(buffer)
        r = _predict(served, [buffer.getvalue()])
    elif case == "truncated":
        r = _predict(served, [dicom_bytes[: len(dicom_bytes) // 2]])
    elif case == "content_type":
        r = client.post("/v1/medical/predict", json={"dicom": "x"}, headers=headers)
    elif case == "no_file":
        r = client.post("/v1/medical/predict", data={"note": "x"}, files=[("other", ("x", b"x"))], headers=headers)
    else:
        r = _predict(served, [dicom_bytes], note_kind="diary")
    assert 400 <= r.status_code < 500, r.text
    body = r.json()
    assert body["error"] and "\n" not in body["error"] and body["class"]
    assert SENTINEL_NAME.split("^")[0] not in r.text and SENTINEL_ID not in r.text and "sentinel-note" not in r.text
    expected = {"corrupt": 400, "bomb": 413, "content_type": 415, "no_file": 422, "bad_note_kind": 400}
    if case in expected:
        assert r.status_code == expected[case], body
    assert _predict(served, [dicom_bytes]).status_code == 200


def test_identifiers_and_note_never_reach_audit_logs_or_metrics(served, dicom_bytes, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    assert _predict(served, [dicom_bytes]).status_code == 200
    _predict(served, [dicom_bytes[:300]])  # an error path too
    wrong_key = "wrong-key-sentinel-5521"  # an auth failure of its own: the test must not depend on which tests ran before it
    assert served["client"].post("/v1/medical/predict", data={"note": SENTINEL_NOTE}, headers={"Authorization": f"Bearer {wrong_key}"}).status_code == 401
    metrics = served["client"].get("/metrics", headers=served["admin"]).text
    audit = (served["folder"] / "audit.jsonl").read_text()
    captured = capfd.readouterr()
    for where, text in {"audit": audit, "logs": caplog.text, "stdout": captured.out, "stderr": captured.err, "metrics": metrics}.items():
        for sentinel in (SENTINEL_ID, "Zyxwvut", "Qwertyuiop", "sentinel-note-text-7731", wrong_key, *served["secrets"]):
            assert sentinel not in text, f"{sentinel!r} found in the {where}"
    events = [json.loads(line) for line in audit.splitlines()]
    predicted = [e for e in events if e.get("endpoint") == "/v1/medical/predict" and e.get("status") == 200]
    assert predicted and {"time", "request_id", "key_id", "endpoint", "status", "latency_ms", "version", "sha256"} <= set(predicted[-1])
    assert predicted[-1]["key_id"] == "caller" and predicted[-1]["version"] == "v1"
    assert any(e.get("event") == "auth_failure" for e in events) and any(e.get("event") == "model_load" for e in events)


def test_stored_inputs_are_de_identified(served, dicom_bytes):
    r = _predict(served, [dicom_bytes])
    stored = served["folder"] / "stored" / r.headers["x-request-id"]
    files = sorted(p for p in stored.rglob("*") if p.is_file())
    assert [p.suffix for p in files] == [".dcm"], "only the DICOM is stored: never the note (it sits in the manifest)"
    ds = pydicom.dcmread(files[0])
    assert SENTINEL_ID not in str(ds.get("PatientID", "")) and "Zyxwvut" not in str(ds.get("PatientName", ""))
    assert str(ds.PatientIdentityRemoved) == "NO"  # Basic Profile applied; pixels not verified free of burned-in text
    assert SENTINEL_ID.encode() not in files[0].read_bytes() and b"Zyxwvut" not in files[0].read_bytes()


def test_decoder_crash_and_hang_cost_only_that_request(served, dicom_bytes, monkeypatch):
    from mmapps_domains.medical import serve as medical_serve

    original = medical_serve.request_root
    pids = set(served["state"].decoders.pids)
    for reader, status in (("mmapps.serve.testkit:crash_reader", 422),):
        def broken(*args, reader=reader, **kwargs):
            written = original(*args, **kwargs)
            written.reader = reader
            return written

        monkeypatch.setattr(medical_serve, "request_root", broken)
        r = _predict(served, [dicom_bytes])
        assert r.status_code == status and r.json()["class"] == "decoder_crashed", r.text
        monkeypatch.setattr(medical_serve, "request_root", original)
    assert served["client"].get("/v2/health/live").status_code == 200
    assert _predict(served, [dicom_bytes]).status_code == 200
    assert set(served["state"].decoders.pids) != pids  # the crashed child was replaced


def test_v2_endpoints_json(served):
    client, headers = served["client"], served["predict"]
    assert client.get("/v2").json()["name"] == "mmapps"
    assert client.get("/v2/health/live").status_code == 200 and client.get("/v2/health/ready").status_code == 200
    meta = client.get("/v2/models/medical", headers=headers).json()
    assert {i["name"] for i in meta["inputs"]} == {"image", "note"} and meta["outputs"][0]["name"] == "findings"
    assert client.get("/v2/models/medical/versions/v1", headers=headers).status_code == 200
    assert client.get("/v2/models/medical/versions/nope", headers=headers).status_code == 404
    assert client.get("/v2/models/other", headers=headers).status_code == 404
    assert client.get("/v2/models/medical/ready", headers=headers).status_code == 200
    body = {"inputs": [{"name": "image", "shape": [1, 1, 1, 48, 48], "datatype": "FP32", "data": [0.0] * 48 * 48}]}
    r = client.post("/v2/models/medical/infer", json=body, headers=headers)
    assert r.status_code == 200 and r.json()["outputs"][0]["shape"] == [1, 14]
    bad = client.post("/v2/models/medical/infer", json={"inputs": [{"name": "image", "shape": [2], "datatype": "FP32", "data": [1.0]}]}, headers=headers)
    assert bad.status_code == 400 and "shape" in bad.json()["error"]
    huge = client.post("/v2/models/medical/infer", content=b"{" + b" " * (9 * 2**20), headers={**headers, "content-type": "application/json"})
    assert huge.status_code == 413


def test_v2_through_tritonclient_on_uvicorn(served, dicom_bytes):
    """A real uvicorn on loopback, called by Triton's own HTTP client (JSON and binary tensors)."""
    import tritonclient.http as triton
    import uvicorn

    from mmapps.serve.app import create_app

    config = uvicorn.Config(create_app(served["state"]), host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    served["dicom"] = dicom_bytes
    try:
        client = triton.InferenceServerClient(f"127.0.0.1:{port}")
        headers = dict(served["predict"])  # tritonclient adds Inference-Header-Content-Length (an int) to the dict it is given
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("medical", headers=headers)
        meta = client.get_model_metadata("medical", headers=headers)
        assert meta["name"] == "medical" and "v1" in meta["versions"]
        image = np.random.default_rng(0).standard_normal((2, 1, 1, 48, 48)).astype(np.float32)
        notes = np.array([b"HISTORY: cough", b"INDICATION: fever"], dtype=object)
        results = {}
        for binary in (False, True):
            inputs = [triton.InferInput("image", list(image.shape), "FP32"), triton.InferInput("note", [2], "BYTES")]
            inputs[0].set_data_from_numpy(image, binary_data=binary)
            inputs[1].set_data_from_numpy(notes, binary_data=binary)
            answer = client.infer("medical", inputs, outputs=[triton.InferRequestedOutput("findings", binary_data=binary)], headers=headers)
            results[binary] = answer.as_numpy("findings")
        assert results[True].shape == (2, 14)
        np.testing.assert_allclose(results[True], results[False], rtol=1e-5, atol=1e-6)
        # the same tensors through the runner directly (the protocol adds nothing)
        from mmapps.serve.tensors import samples_from_tensors

        runner = served["state"].versions.get("v1").runner
        direct = np.stack([p.raw["findings"] for p in runner.predict(samples_from_tensors({"image": image, "note": notes}, runner.modality_to_layout), postprocess=False)])
        np.testing.assert_allclose(results[True], direct, rtol=1e-5, atol=1e-5)
        with pytest.raises(Exception) as unauthorised:
            client.get_model_metadata("medical")
        assert "401" in str(unauthorised.value) or "API key" in str(unauthorised.value)
        _run_deploy_doc_examples(port, served)
    finally:
        server.should_exit = True
        thread.join(10)


def _run_deploy_doc_examples(port: int, served) -> None:
    """docs/deploy.md, "Serving: medical": the v2 client block and the curl command run against this server."""
    import re
    import shutil
    import subprocess

    text = (Path(__file__).resolve().parents[1] / "docs" / "deploy.md").read_text()
    section = text[text.index("## Serving: medical"): text.index("## Serving: driving")]
    code = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
    code = code.replace("127.0.0.1:8000", f"127.0.0.1:{port}").replace("<predict key>", served["secrets"][0])
    exec(compile(code, "docs/deploy.md", "exec"), {})
    curl = re.findall(r"```bash\n(.*?)```", section, flags=re.S)[0]
    if shutil.which("curl") is None:
        return
    study = served["folder"] / "study"
    study.mkdir(exist_ok=True)
    (study / "pa.dcm").write_bytes(served["dicom"])
    (study / "lateral.dcm").write_bytes(served["dicom"])
    script = curl.replace("localhost:8000", f"127.0.0.1:{port}")
    out = subprocess.run(["bash", "-c", f"set -e; PREDICT_KEY={served['secrets'][0]}; " + script], cwd=served["folder"], capture_output=True, text=True, timeout=120)
    body = json.loads(out.stdout)
    assert len(body["findings"]) == 14 and body["presence"]["note"] is True, out.stdout


def test_version_switch_rollback_and_shadow_without_failed_requests(served, dicom_bytes):
    client, admin = served["client"], served["admin"]
    state = served["state"]
    results: list[int] = []
    stop = threading.Event()

    def hammer() -> None:  # its own client (and event loop): one httpx client is not shared between threads
        from mmapps.serve.app import create_app

        body = {"inputs": [{"name": "note", "shape": [1], "datatype": "BYTES", "data": ["HISTORY: cough"]}]}
        with TestClient(create_app(state)) as other:
            while not stop.is_set():
                results.append(other.post("/v2/models/medical/infer", json=body, headers=served["predict"]).status_code)

    worker = threading.Thread(target=hammer)
    worker.start()
    try:
        r = client.post("/v1/admin/versions", json={"source": str(served["checkpoint"]), "version": "v2", "activate": True}, headers=admin)
        assert r.status_code == 200 and r.json()["active"] is True, r.text
        time.sleep(0.3)
        assert client.post("/v1/admin/rollback", headers=admin).json()["active"] == "v1"
        assert client.put("/v1/admin/shadow", json={"version": "v2"}, headers=admin).json()["shadow"] == "v2"
        served_with_shadow = _predict(served, [dicom_bytes])
        time.sleep(0.3)
    finally:
        stop.set()
        worker.join()
    assert results and set(results) == {200}, f"{results.count(200)} ok of {len(results)}"
    assert served_with_shadow.status_code == 200 and served_with_shadow.json()["version"] == "v1"
    assert "shadow" not in served_with_shadow.text.replace('"shadow"', "")
    assert client.get("/v1/admin/versions/v2/card", headers=admin).json()["intended_use"]
    assert client.put("/v1/admin/shadow", json={"version": None}, headers=admin).status_code == 200
    assert client.delete("/v1/admin/versions/v1", headers=admin).status_code == 409  # the active one
    assert client.delete("/v1/admin/versions/v2", headers=admin).status_code == 200
    actions = [e.get("event") for e in state.audit.events]
    assert {"load+activate", "rollback", "shadow", "unload"} <= set(actions)


def test_batched_scores_equal_single_scores_also_for_mixed_requests(served, dicom_bytes):
    """Concurrent requests batched together (with and without a note, one or two images) score as when sent alone."""
    from mmapps_domains.medical.serve import request_root as medical_root

    state = served["state"]
    loaded = state.versions.get("v1")
    runner = loaded.runner
    labels = list(runner.labels["findings"])
    requests = []
    for images, note in (([dicom_bytes], SENTINEL_NOTE), ([dicom_bytes, dicom_bytes], None), ([dicom_bytes], "INDICATION: fever")):
        written = medical_root(images, note, "referral", labels)
        from mmapps.serve.pipeline import decode_job

        requests.append(state.decoders.decode(decode_job(state, runner, written)))
        written.cleanup()
    single = [runner.predict(samples)[0].tasks["findings"]["scores"] for samples in requests]

    async def together():
        return await asyncio.gather(*(loaded.batcher.submit(samples) for samples in requests))

    before = len(loaded.batcher.batches)
    batched = [out[0].tasks["findings"]["scores"] for out in asyncio.run(together())]
    assert max(loaded.batcher.batches[before:]) > 1, "the requests were not batched together"
    np.testing.assert_allclose(np.array(batched), np.array(single), rtol=1e-5, atol=1e-6)

