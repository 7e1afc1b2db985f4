"""The surveillance live WebSocket: alerts equal ``mmapps surveillance watch`` on a demo clip cut into
MPEG-TS segments (the segment muxer) and into fragmented-MP4 fragments; key in a header only;
bounded queue (1013); corrupt media (1007)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from mmapps.serve.audit import AuditLog
from mmapps.serve.auth import KeyStore, parse_env_keys
from mmapps.serve.metrics import ServiceMetrics

PREDICT, ADMIN = "p" * 32, "a" * 32  # admin keys may predict too (the admin scope includes predict)
FPS, WINDOW_S, DURATION = 10, 1.0, 8.0
CHAT_SENTINEL = "SENTINEL chat text 98765"


@pytest.fixture(scope="module")
def live():
    """The live route's module (in the surveillance plugin: importable once the plugin is loaded)."""
    from mmapps.plugins import get_domain

    get_domain("surveillance")
    from mmapps_domains.surveillance import live

    return live


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The surveillance smoke run shared by the serve tests (trained once per session)."""
    from mmapps_domains.surveillance import domain

    from mmapps.serve import testkit

    return testkit.smoke_checkpoint(domain, testkit.shared_folder(tmp_path_factory))


def encode(path: Path, frames: np.ndarray, audio: np.ndarray, fmt: str, options: dict | None = None) -> None:
    """H.264 with a keyframe on every window boundary (as a live encoder set up for segmenting), AAC audio."""
    import av

    out = av.open(str(path), "w", format=fmt, options=options or {})
    v = out.add_stream("h264", rate=FPS)
    v.width, v.height, v.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
    v.gop_size = int(FPS * WINDOW_S)
    v.options = {"keyint_min": str(int(FPS * WINDOW_S)), "sc_threshold": "0", "bf": "0"}
    a = out.add_stream("aac", rate=16000)
    a.layout = "mono"
    for i, img in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = i
        out.mux(v.encode(frame))
    out.mux(v.encode())
    for j in range(0, audio.size, 1024):
        chunk = av.AudioFrame.from_ndarray(audio[None, j:j + 1024], format="fltp", layout="mono")
        chunk.sample_rate, chunk.pts = 16000, j
        out.mux(a.encode(chunk))
    out.mux(a.encode())
    out.close()


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    from mmapps_domains.surveillance.demo import chat_messages, sample_events
    from mmapps_domains.surveillance.demo_audio import render_audio
    from mmapps_domains.surveillance.demo_scene import render_clip

    root = tmp_path_factory.mktemp("clip")
    rng = np.random.default_rng(5)
    events = sample_events(rng, DURATION)
    frames = render_clip(events, DURATION, FPS, rng)
    audio = render_audio(events, DURATION, 16000, rng).astype(np.float32)
    messages = chat_messages(events, rng, DURATION) + [(2.5, "user", CHAT_SENTINEL)]
    encode(root / "clip.ts", frames, audio, "mpegts")
    encode(root / "clip.mp4", frames, audio, "mp4", {"movflags": "frag_keyframe+empty_moov+default_base_moof"})
    with open(root / "chat.jsonl", "w") as handle:
        handle.writelines(json.dumps({"t": round(t, 2), "user": user, "text": text}) + "\n" for t, user, text in sorted(messages))
    return SimpleNamespace(root=root, messages=sorted(messages))


def ts_segments(path: Path, out: Path) -> list[bytes]:
    """Cut with FFmpeg's segment muxer (segment_time = one window), as a live segmenter does."""
    import av

    src = av.open(str(path))
    seg = av.open(str(out / "seg%03d.ts"), "w", format="segment", options={"segment_time": str(WINDOW_S), "segment_format": "mpegts"})
    streams = [seg.add_stream_from_template(s) for s in src.streams]
    for packet in src.demux():
        if packet.dts is not None:
            packet.stream = streams[packet.stream.index]
            seg.mux(packet)
    seg.close()
    src.close()
    return [p.read_bytes() for p in sorted(out.glob("seg*.ts"))]


def fmp4_segments(path: Path) -> list[bytes]:
    """The init segment (ftyp + moov), then one media segment per moof + mdat pair."""
    data, boxes, i = path.read_bytes(), [], 0
    while i < len(data):
        size, kind = int.from_bytes(data[i:i + 4], "big"), data[i + 4:i + 8]
        boxes.append((kind, data[i:i + size]))
        i += size
    init = b"".join(b for k, b in boxes if k in (b"ftyp", b"moov"))
    media, current = [], b""
    for kind, box in boxes:
        if kind == b"moof" and current:
            media.append(current)
            current = b""
        if kind in (b"moof", b"mdat"):
            current += box
    return [init] + media + [current]


@pytest.fixture(scope="module")
def service(checkpoint: Path, live) -> SimpleNamespace:
    return make_service(checkpoint, 32, live)


@pytest.fixture(scope="module")
def small_queue(service: SimpleNamespace, live) -> SimpleNamespace:
    app = FastAPI()
    state = SimpleNamespace(**{**vars(service.state), "extra": {"live": live.LiveSettings(queue_segments=2)}})
    app.include_router(live.router(state))
    return SimpleNamespace(app=app, state=state)


def make_service(checkpoint: Path, queue_segments: int, live) -> SimpleNamespace:
    from mmapps_domains.surveillance import domain

    from mmapps.serve.runner import load_runner

    runner = load_runner(checkpoint, domain)
    version = SimpleNamespace(name=runner.version, runner=runner)
    keys = KeyStore(parse_env_keys(f"cam:predict:{PREDICT};ops:admin:{ADMIN}", b"pepper" * 6), b"pepper" * 6)
    state = SimpleNamespace(domain=domain, keys=keys, audit=AuditLog(None), metrics=ServiceMetrics(),
                            versions=SimpleNamespace(get=lambda: version), extra={"live": live.LiveSettings(queue_segments=queue_segments)})
    app = FastAPI()
    app.include_router(live.router(state))
    return SimpleNamespace(app=app, state=state)


def watch_alerts(clip_path: Path, checkpoint: Path, chat: Path, tmp_path: Path) -> tuple[list[dict], np.ndarray]:
    from mmapps_domains.surveillance.watch import watch_clip

    watch_clip(clip_path, checkpoint, chat=chat, out=tmp_path / "alerts.jsonl", scores_out=tmp_path / "scores.jsonl", threads=None)
    alerts = [json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    scores = np.array([json.loads(x)["scores"] for x in (tmp_path / "scores.jsonl").read_text().splitlines()])
    return alerts, scores


def stream(client: TestClient, segments: list[bytes], messages: list[tuple], header: dict, init: bytes | None = None,
           url: str = "/v1/surveillance/live?scores=1", when=lambda t: t) -> list[dict]:
    received = []
    with client.websocket_connect(url, headers=header) as ws:
        if init is not None:
            ws.send_bytes(init)
        for k, seg in enumerate(segments):  # each segment's chat lines go first
            for t, user, text in messages:
                if k * WINDOW_S <= t < (k + 1) * WINDOW_S or (k == len(segments) - 1 and t >= (k + 1) * WINDOW_S):
                    ws.send_text(json.dumps({"type": "chat", "t": when(round(t, 2)), "user": user, "text": text}))
            ws.send_bytes(seg)
        ws.send_text(json.dumps({"type": "end"}))
        while True:
            message = ws.receive_json()
            received.append(message)
            if message["type"] == "end":
                break
    return received


@pytest.mark.slow
@pytest.mark.parametrize("container", ["mpegts", "fmp4"])
def test_live_alerts_equal_watch(service, clip, checkpoint, tmp_path, container):
    path = clip.root / ("clip.ts" if container == "mpegts" else "clip.mp4")
    expected_alerts, expected_scores = watch_alerts(path, checkpoint, clip.root / "chat.jsonl", tmp_path)
    if container == "mpegts":
        segments, init = ts_segments(path, tmp_path), None
    else:
        init, *segments = fmp4_segments(path)
    assert len(segments) >= DURATION / WINDOW_S - 1
    with TestClient(service.app) as client:
        received = stream(client, segments, clip.messages, {"Authorization": f"Bearer {PREDICT}"}, init)
    windows = [m for m in received if m["type"] == "window"]
    alerts = [{k: v for k, v in m.items() if k != "type"} for m in received if m["type"] == "alert"]
    assert [m for m in received if m["type"] == "error"] == []
    assert received[-1] == {"type": "end", "windows": len(expected_scores), "alerts": len(expected_alerts), "late_chat": 0}
    np.testing.assert_allclose(np.array([w["scores"] for w in windows]), expected_scores, atol=1e-5)
    assert [(a["start"], a["end"], a["class"]) for a in alerts] == [(a["start"], a["end"], a["class"]) for a in expected_alerts]
    np.testing.assert_allclose([a["score"] for a in alerts], [a["score"] for a in expected_alerts], atol=2e-4)
    assert expected_scores.max() > 0.0 and len(expected_scores) == DURATION / WINDOW_S
    events = service.state.audit.events
    assert events[-1]["event"] == "live_stream" and events[-1]["status"] == 1000
    assert CHAT_SENTINEL not in json.dumps(events) and "SENTINEL" not in service.state.metrics.render()[0].decode()


@pytest.mark.slow
def test_live_chat_with_iso_times_and_the_stream_start_time_scores_as_stream_seconds(service, clip, tmp_path):
    """A VMS export gives chat times as wall-clock ISO-8601: with ``?start_time=`` they land in the same windows."""
    from datetime import datetime, timedelta

    segments = ts_segments(clip.root / "clip.ts", tmp_path)
    header = {"Authorization": f"Bearer {PREDICT}"}
    start = datetime(2026, 5, 1, 13, 0, 0)
    with TestClient(service.app) as client:
        seconds = stream(client, segments, clip.messages, header)
        iso = stream(client, segments, clip.messages, header, url=f"/v1/surveillance/live?scores=1&start_time={start.isoformat()}",
                     when=lambda t: (start + timedelta(seconds=t)).isoformat())
        without_start = stream(client, segments[:1], clip.messages[:1], header, when=lambda t: (start + timedelta(seconds=t)).isoformat())
        with pytest.raises(WebSocketDisconnect) as err, client.websocket_connect("/v1/surveillance/live?start_time=yesterday", headers=header) as ws:
            refused = ws.receive_json()
            ws.receive_json()
    assert err.value.code == 1007 and refused["type"] == "error" and "start_time" in refused["message"] and "ISO-8601" in refused["message"]
    assert [m for m in iso if m["type"] == "error"] == [] and seconds[-1] == iso[-1]
    scores = lambda received: [m["scores"] for m in received if m["type"] == "window"]  # noqa: E731
    assert scores(iso) == scores(seconds) and len(scores(iso)) > 1
    assert any(m["type"] == "error" and "start_time" in m["message"] for m in without_start)  # an ISO time without the start: told, not guessed


def test_live_key_in_header_only(service):
    with TestClient(service.app) as client:
        for url, headers in [("/v1/surveillance/live", {}), (f"/v1/surveillance/live?api_key={PREDICT}", {}),
                             ("/v1/surveillance/live", {"Authorization": "Bearer " + "wrong" * 8}),
                             (f"/v1/surveillance/live?token={PREDICT}", {"X-API-Key": PREDICT})]:
            with pytest.raises(WebSocketDisconnect) as err, client.websocket_connect(url, headers=headers) as ws:
                ws.receive_json()
            assert err.value.code == 1008
    reasons = [e.get("reason") for e in service.state.audit.events if e.get("event") == "auth_failure"]
    assert reasons[-4:] == ["no key", "key in query string", "unknown key", "key in query string"]
    assert PREDICT not in json.dumps(service.state.audit.events)


def test_live_overload_closes_1013_and_corrupt_media_1007(small_queue, clip, tmp_path):
    service = small_queue
    segments = ts_segments(clip.root / "clip.ts", tmp_path)
    header = {"X-API-Key": PREDICT}
    with TestClient(service.app) as client:
        with pytest.raises(WebSocketDisconnect) as err, client.websocket_connect("/v1/surveillance/live", headers=header) as ws:
            for _ in range(50):  # far faster than real time: the queue of 2 segments overflows
                for seg in segments:
                    ws.send_bytes(seg)
            while True:
                ws.receive_json()
        assert err.value.code == 1013
        with pytest.raises(WebSocketDisconnect) as err, client.websocket_connect("/v1/surveillance/live", headers=header) as ws:
            ws.send_bytes(b"\x00not a transport stream" * 500)
            ws.send_text(json.dumps({"type": "end"}))
            while True:
                ws.receive_json()
        assert err.value.code == 1007
        with client.websocket_connect("/v1/surveillance/live", headers=header) as ws:  # the next stream is served
            ws.send_text("not json")
            assert ws.receive_json()["type"] == "error"
            ws.send_text(json.dumps({"type": "chat", "t": "soon", "text": CHAT_SENTINEL}))
            reply = ws.receive_json()
            assert reply["type"] == "error" and "field 't'" in reply["message"] and CHAT_SENTINEL not in reply["message"]
    s = service.state.metrics.render()[0].decode()
    assert 'mmapps_input_errors_total{kind="live_overloaded"}' in s and 'mmapps_input_errors_total{kind="live_media"}' in s


def test_only_the_surveillance_domain_declares_the_live_route():
    from mmapps.plugins import get_domain
    from mmapps.serve.hooks import serve_hooks

    assert serve_hooks(get_domain("surveillance")).socket_routes is not None
    assert all(serve_hooks(get_domain(name)).socket_routes is None for name in ("medical", "driving"))
