"""The service's parts without a model: API keys, rate limits, audit log, v2 tensors, header caps, the pipe format, bind rules."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mmapps.errors import ConfigError
from mmapps.serve import auth
from mmapps.serve.errors import ServeError


def test_keys_file_lines_from_the_generator_are_accepted_and_hold_no_secret(tmp_path: Path):
    proc = subprocess.run([sys.executable, "-m", "mmapps.serve.auth", "new", "caller", "--scopes", "predict"], capture_output=True, text=True, check=True)
    line = proc.stdout.strip()
    secret = proc.stderr.strip().rsplit(" ", 1)[-1]
    assert secret not in line and line.startswith("caller predict hmac-sha256:")
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text(f"# rotation: two keys\n{line}\n")
    store = auth.KeyStore.load(keys_file, environ={})
    assert store.check(secret).key_id == "caller"
    assert store.check(secret + "x") is None and store.check("") is None and store.check(None) is None
    pepper = auth.pepper_path()
    assert stat.S_IMODE(pepper.stat().st_mode) == 0o600


def test_environment_keys_scopes_and_rotation():
    env = {auth.ENV_KEYS: "old:predict:" + "a" * 30 + ";new:predict:" + "b" * 30 + "\nops:admin:" + "c" * 30}
    store = auth.KeyStore.load(None, environ=env)
    assert [k.key_id for k in store.keys] == ["old", "new", "ops"]
    assert store.check("a" * 30).allows("predict") and not store.check("a" * 30).allows("admin")
    assert store.check("c" * 30).allows("predict")  # admin implies predict
    assert all(len(k.digest) == 32 and b"aaaa" not in k.digest for k in store.keys)


@pytest.mark.parametrize("text, fragment", [
    ("x:predict:short", "at least 24"),
    ("x:predict", "'<key_id>:<scopes>:<secret>'"),
    ("x:root:" + "a" * 30, "subset of predict, admin"),
    ("bad id!:predict:" + "a" * 30, "key id"),
    ("x:predict:" + "a" * 30 + ";x:admin:" + "b" * 30, "more than once"),
])
def test_bad_environment_keys_are_refused_without_echoing_the_secret(text: str, fragment: str):
    with pytest.raises(ConfigError) as err:
        auth.KeyStore.load(None, environ={auth.ENV_KEYS: text})
    assert fragment in str(err.value)
    assert "a" * 30 not in str(err.value) and "short" not in str(err.value)


def test_bad_keys_file_line_names_the_line(tmp_path: Path):
    path = tmp_path / "keys.txt"
    path.write_text("caller predict sha256:abcd\n")
    with pytest.raises(ConfigError, match="line 1"):
        auth.parse_keys_file(path)


def test_rate_limiter_bucket():
    from mmapps.serve.limits import RateLimiter, retry_after

    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [limiter.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.take("k")
    assert wait == pytest.approx(0.5) and retry_after(wait) == "1"
    assert limiter.take("other") == 0.0  # per key
    now[0] = 0.5
    assert limiter.take("k") == 0.0


def test_audit_log_is_append_only_private_and_refuses_unknown_fields(tmp_path: Path):
    from mmapps.serve.audit import AuditLog

    path = tmp_path / "audit.jsonl"
    path.write_text('{"earlier": 1}\n')
    os.chmod(path, 0o600)
    log = AuditLog(path)
    log.write(request_id="r1", endpoint="/v1/medical/predict", status=200)
    with pytest.raises(AssertionError):
        log.write(note="free text")
    log.close()
    lines = path.read_text().splitlines()
    assert json.loads(lines[0]) == {"earlier": 1} and json.loads(lines[1])["request_id"] == "r1"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_v2_tensors_json_binary_and_samples():
    from mmapps.serve.tensors import parse_infer_body, samples_from_tensors, to_output

    image = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    raw = image.tobytes()
    head = json.dumps({"inputs": [
        {"name": "img", "shape": [2, 3, 4], "datatype": "FP32", "parameters": {"binary_data_size": len(raw)}},
        {"name": "txt", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]},
        {"name": "img__present", "shape": [2], "datatype": "BOOL", "data": [True, False]},
        {"name": "pts", "shape": [3, 2], "datatype": "FP32", "data": [[1, 2], [3, 4], [5, 6]]},
        {"name": "pts__offsets", "shape": [3], "datatype": "INT64", "data": [0, 1, 3]},
    ]}).encode()
    _, tensors = parse_infer_body(head + raw, str(len(head)))
    np.testing.assert_array_equal(tensors["img"], image)
    samples = samples_from_tensors(tensors, {"img": "fixed", "txt": "text", "pts": "packed"})
    assert samples[0].inputs["txt"] == "a" and samples[1].inputs["img"] is None
    assert samples[1].inputs["pts"].shape == (2, 2) and samples[0].inputs["img"].shape == (3, 4)
    entry, blob = to_output("out", image, binary=True)
    assert entry["parameters"]["binary_data_size"] == len(blob) == image.nbytes
    for body, fragment in ((b"[1]", "inputs"), (b"not json", "not JSON"),
                           (json.dumps({"inputs": [{"name": "img", "shape": [2], "datatype": "FP32", "data": [1]}]}).encode(), "shape")):
        with pytest.raises(ServeError, match=fragment):
            parse_infer_body(body, None)
    with pytest.raises(ServeError, match="not inputs of this model"):
        samples_from_tensors({"other": image}, {"img": "fixed"})


def test_wire_round_trip_never_pickles():
    import torch

    from mmapps.data import Sample
    from mmapps.serve.wire import (
        decode_samples,
        encode_samples,
        read_frame,
        write_frame,
    )

    sample = Sample("s", "g", {"image": torch.ones(2, 3), "note": "x", "audio": None}, {"t": torch.zeros(1)}, {"calib": {"P2": np.eye(3)}, "view": "PA"})
    header, payload = encode_samples([sample])
    buffer = io.BytesIO()
    write_frame(buffer, header, payload)
    buffer.seek(0)
    back = decode_samples(*read_frame(buffer))[0]
    assert torch.equal(back.inputs["image"], sample.inputs["image"]) and back.inputs["note"] == "x" and back.inputs["audio"] is None
    np.testing.assert_array_equal(back.meta["calib"]["P2"], np.eye(3))
    assert back.targets == {}  # a served request has no targets
    assert b"\x80\x04" not in payload[:64]  # npz, not a pickle stream
    with np.load(io.BytesIO(payload), allow_pickle=False) as arrays:
        assert all(arrays[k].dtype != object for k in arrays.files)


def test_header_caps_refuse_bombs_and_truncated_video_before_decoding(tmp_path: Path):
    import av
    from PIL import Image
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from mmapps.serve.caps import Refused, check_file

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = FileDataset(str(tmp_path / "bomb.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.BitsAllocated, ds.PixelRepresentation = 50000, 50000, 1, 16, 0
    ds.PixelData = b"\0" * 16
    ds.save_as(tmp_path / "bomb.dcm", enforce_file_format=True)
    with pytest.raises(Refused) as err:
        check_file(tmp_path / "bomb.dcm", {"max_pixels": 10_000_000})
    assert err.value.kind == "too_large" and "50000 x 50000" in str(err.value)
    (tmp_path / "junk.dcm").write_bytes(b"junk" * 50)
    with pytest.raises(Refused) as err:
        check_file(tmp_path / "junk.dcm", {"max_pixels": 10})
    assert err.value.kind == "bad_dicom"
    Image.new("L", (4000, 3000)).save(tmp_path / "big.png")
    with pytest.raises(Refused, match="4000 x 3000"):
        check_file(tmp_path / "big.png", {"max_pixels": 1_000_000})
    with av.open(str(tmp_path / "clip.mp4"), "w") as out:
        stream = out.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(40):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 5, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    check_file(tmp_path / "clip.mp4", {"max_frames": 100, "max_pixels": 10_000})
    with pytest.raises(Refused, match="frames"):
        check_file(tmp_path / "clip.mp4", {"max_frames": 10})
    data = (tmp_path / "clip.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 3] if data[4:8] == b"ftyp" and data.find(b"moov") > len(data) // 2 else data[:200])
    with pytest.raises(Refused) as err:
        check_file(tmp_path / "cut.mp4", {"max_frames": 100})
    assert err.value.kind == "bad_video"
    (tmp_path / "cloud.pcd").write_text("VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 900000\nHEIGHT 1\nPOINTS 900000\nDATA ascii\n")
    with pytest.raises(Refused, match="900000 points"):
        check_file(tmp_path / "cloud.pcd", {"max_points": 500_000})


def test_bind_rules():
    from mmapps.serve.server import check_bind, is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and not is_loopback("0.0.0.0")
    with pytest.raises(ConfigError, match="TLS is required"):
        check_bind("0.0.0.0", None, None, 1)
    with pytest.raises(ConfigError, match="no API key"):
        check_bind("127.0.0.1", None, None, 0)
    with pytest.raises(ConfigError, match="go together"):
        check_bind("127.0.0.1", Path("cert.pem"), None, 1)
    check_bind("127.0.0.1", None, None, 1)


def test_serve_cli_refuses_a_public_bind_without_tls_before_loading(tmp_path: Path, monkeypatch):
    from typer.testing import CliRunner

    from mmapps.cli.main import app

    monkeypatch.setenv(auth.ENV_KEYS, "caller:predict:" + "z" * 30)
    result = CliRunner().invoke(app, ["medical", "serve", "--checkpoint", str(tmp_path / "none.safetensors"), "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "TLS is required" in result.output
    monkeypatch.delenv(auth.ENV_KEYS)
    result = CliRunner().invoke(app, ["medical", "serve", "--checkpoint", str(tmp_path / "none.safetensors")])
    assert result.exit_code == 2 and "no API key" in result.output


def test_decoder_pool_survives_a_crashing_and_a_hanging_reader(tmp_path: Path):
    """A reader that aborts or never returns costs its own job (422 / 504); the pool answers the next job."""
    from mmapps.serve.decoders import DecoderPool

    pool = DecoderPool(1, ["numpy"], 1024, timeout_s=3)
    pool.start()
    try:
        job = {"domain": "medical", "config": {"domain": "medical"}, "root": str(tmp_path)}
        first = set(pool.pids)
        with pytest.raises(ServeError) as crash:
            pool.decode({**job, "reader": "mmapps.serve.testkit:crash_reader"})
        assert crash.value.status == 422 and crash.value.kind == "decoder_crashed"
        with pytest.raises(ServeError) as hang:
            pool.decode({**job, "reader": "mmapps.serve.testkit:hang_reader"})
        assert hang.value.status == 504 and hang.value.kind == "decode_timeout"
        with pytest.raises(ServeError) as answered:  # a live child answers: an unknown domain is the caller's 400
            pool.decode({**job, "domain": "no-such-domain"})
        assert answered.value.status == 400 and "no-such-domain" in str(answered.value)
        assert pool.crashes == 1 and pool.timeouts == 1 and first.isdisjoint(pool.pids)
    finally:
        pool.close()


def test_first_exit_signal_turns_readiness_off_and_drains_before_exiting():
    """DrainingServer on a real uvicorn: readiness 503 at once, the request in flight still answered, then exit."""
    import asyncio
    import signal
    import threading
    import time

    import httpx
    import uvicorn

    from mmapps.serve.audit import AuditLog
    from mmapps.serve.server import DrainingServer

    class State:
        draining, in_flight, audit = False, 0, AuditLog(None)

    state = State()

    async def app(scope, receive, send):  # the service's readiness and in-flight contract, without a model
        if scope["type"] != "http":
            return
        state.in_flight += 1
        try:
            if scope["path"] == "/slow":
                await asyncio.sleep(2)
            status = 503 if scope["path"] == "/v2/health/ready" and state.draining else 200
            await send({"type": "http.response.start", "status": status, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        finally:
            state.in_flight -= 1

    server = DrainingServer(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"), state, 0.5, 30, None)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    answers: dict[str, int] = {}
    slow = threading.Thread(target=lambda: answers.__setitem__("in_flight", httpx.get(f"{url}/slow", timeout=30).status_code))
    slow.start()
    while state.in_flight == 0:
        time.sleep(0.01)
    server.handle_exit(signal.SIGTERM, None)
    answers["ready"] = httpx.get(f"{url}/v2/health/ready").status_code
    slow.join(30)
    thread.join(30)
    assert answers == {"ready": 503, "in_flight": 200} and not thread.is_alive()
    assert state.audit.events[-1] == {**state.audit.events[-1], "event": "shutdown", "reason": "drained"}


def test_serve_hooks_accept_the_short_form_and_refuse_other_objects():
    from types import SimpleNamespace

    from mmapps.errors import DomainLoadError
    from mmapps.serve.hooks import ServeHooks, serve_hooks

    def add_routes(api, state):
        return None

    assert serve_hooks(SimpleNamespace(name="x", serve=None)) == ServeHooks()
    assert serve_hooks(SimpleNamespace(name="x", serve=add_routes)).routes is add_routes
    with pytest.raises(DomainLoadError, match="expected a mmapps.serve.hooks.ServeHooks"):
        serve_hooks(SimpleNamespace(name="x", serve=42))
    with pytest.raises(DomainLoadError, match="cannot be imported"):
        serve_hooks(SimpleNamespace(name="x", serve="no_such_module_here:HOOKS"))


def test_input_present_follows_the_collate_rule():
    import torch

    from mmapps.data.sample import Sample, collate_samples, input_present

    values = [None, torch.zeros((0, 3)), torch.ones((2, 3))]
    assert [input_present(v, "padded") for v in values] == [False, False, True]
    assert input_present(torch.zeros((0, 3)), "packed") and not input_present(None, "fixed")
    batch = collate_samples([Sample(str(i), str(i), {"x": v}) for i, v in enumerate(values)], {"x": "padded"})
    assert batch.inputs["x"].present.tolist() == [input_present(v, "padded") for v in values]
