"""The surveillance live endpoint: a WebSocket that takes media segments and chat lines, pushes alerts.

``WS /v1/surveillance/live`` (the ``predict`` scope; the key in ``Authorization: Bearer <key>`` or
``X-API-Key``, never the query string: a query string naming a key is refused).

Client -> server:

- binary frames: the stream's bytes, MPEG-TS or fragmented MP4 (the init segment first, then the
  media segments), cut on window boundaries as a segmenter writes them (``ffmpeg -f segment``,
  ``-f hls -hls_segment_type fmp4``); any cut works, since the segments are read as one stream;
- text frames, JSON: ``{"type": "chat", "t": 12.3, "user": "...", "text": "..."}`` (``t`` in
  stream seconds, or an ISO-8601 time when the URL gives the stream's ``?start_time=``, as video
  management systems export chat; a window is scored with the chat lines received before the media
  that closes it, so send a segment's chat lines before the segment); ``{"type": "end"}`` after the
  last segment.

Server -> client (URL options: ``?scores=1`` per-window scores, ``?chat=0`` a stream without chat,
``?start_time=2026-05-01T13:00:00`` the wall-clock time of the stream's first frame; a bad one is an
error frame and close 1007): ``{"type": "alert", "start", "end", "class", "score"}`` as each alert closes
(the `watch` rule), ``{"type": "window", "index", "start", "scores"}`` per window when the URL
asks ``?scores=1``, ``{"type": "error", "message"}`` for a bad chat line, and at the end
``{"type": "end", "windows", "alerts", "late_chat"}`` before a normal close (1000).

The scores are those of ``mmapps surveillance watch``: the same window sampler, audio buffer,
feature tensors, `StreamingScorer` and `AlertTracker` (the segments are decoded as one continuous
stream by `live_stream.LiveDecoder`). Each stream has a bounded queue of ``queue_segments``
segments: a client sending faster than the model scores is closed with 1013 (try again later);
more than ``max_streams`` streams at once are refused with 1013 as well. Corrupt media closes
with 1007. Nothing of the payload (media, chat text) is logged or audited.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

log = logging.getLogger("mmapps.serve.live")  # the service's logger tree (structured JSON logs)
OVERLOADED, INVALID_DATA, POLICY = 1013, 1007, 1008
_KEY_WORDS = ("key", "token", "secret", "auth", "password")


@dataclass
class LiveSettings:
    """Limits of the live endpoint.

    Args:
        queue_segments: segments waiting per stream before the stream is closed with 1013.
        max_streams: streams scored at once (each holds one scoring thread).
        max_segment_bytes: largest binary frame.
        max_chat_chars: longest chat line text.
    """

    queue_segments: int = 8
    max_streams: int = 4
    max_segment_bytes: int = 16 * 2**20
    max_chat_chars: int = 2000


def _presented_key(ws: WebSocket) -> str | None:
    auth = ws.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return ws.headers.get("x-api-key")


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    try:
        await ws.close(code=code, reason=reason[:120])  # a close reason is at most 123 bytes
    except RuntimeError:  # already closed
        pass


def router(state: Any) -> APIRouter:
    """The live route (``ServeHooks.socket_routes``: included at the application level; it checks its key itself)."""
    r = APIRouter()
    settings: LiveSettings = state.extra.get("live") or LiveSettings()
    pool = ThreadPoolExecutor(max_workers=settings.max_streams, thread_name_prefix="mmapps-live")
    active = {"streams": 0}
    endpoint = "/v1/surveillance/live"

    @r.websocket(endpoint)
    async def live(ws: WebSocket) -> None:
        request_id, started = uuid.uuid4().hex, time.perf_counter()
        audit = {"request_id": request_id, "endpoint": endpoint, "method": "WS"}
        if any(word in name.lower() for name in ws.query_params for word in _KEY_WORDS):
            state.audit.write(**audit, event="auth_failure", reason="key in query string")
            await _close(ws, POLICY, "API keys go in the Authorization or X-API-Key header, never the URL")
            return
        presented = _presented_key(ws)
        key = state.keys.check(presented) if state.keys is not None else None
        if key is None or not key.allows("predict"):
            reason = "no key" if not presented else "unknown key" if key is None else "scope predict missing"
            state.audit.write(**audit, key_id=getattr(key, "key_id", None), event="auth_failure", reason=reason)
            await _close(ws, POLICY, "a key with the predict scope is needed (Authorization: Bearer <key>)")
            return
        if active["streams"] >= settings.max_streams:
            state.metrics.input_error("live_overloaded")
            await _close(ws, OVERLOADED, f"all {settings.max_streams} live streams are busy; retry later")
            return
        await ws.accept()
        try:
            start_time = _start_time(ws.query_params.get("start_time"))
        except ValueError as err:
            await ws.send_json({"type": "error", "message": str(err)})
            await _close(ws, INVALID_DATA, str(err)[:120])
            return
        active["streams"] += 1
        code = 1000
        version = state.versions.get()
        audit.update(key_id=key.key_id, model=state.domain.name, version=version.name, sha256=version.runner.sha256)
        try:
            with state.metrics.in_flight(endpoint):
                code = await _serve_stream(ws, state, version, settings, pool, ws.query_params.get("scores") in ("1", "true"),
                                           ws.query_params.get("chat") not in ("0", "false"), start_time)
        finally:
            active["streams"] -= 1
            seconds = time.perf_counter() - started
            state.metrics.request(endpoint, code, seconds)
            state.audit.write(**audit, status=code, latency_ms=round(seconds * 1000, 2), event="live_stream")

    return r


def _start_time(value: str | None) -> Any:
    """The ``?start_time=`` URL option as a datetime (None when absent)."""
    from datetime import datetime

    if value is None or not value.strip():
        return None
    try:
        return datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"URL option start_time: found {value[:40]!r}; expected an ISO-8601 time such as 2026-05-01T13:00:00 "
                         "(the wall-clock time of the stream's first frame, for chat lines with ISO times)") from None


async def _serve_stream(ws: WebSocket, state: Any, version: Any, settings: LiveSettings, pool: ThreadPoolExecutor,
                        send_scores: bool, chat: bool, start_time: Any = None) -> int:
    """Run one stream to its end; returns the close code."""
    from mmapps_domains.surveillance.live_stream import LiveDecoder, LiveScorer, SegmentFeed

    loop = asyncio.get_running_loop()
    feed = SegmentFeed(settings.queue_segments)
    scorer = await loop.run_in_executor(pool, LiveScorer, version.runner, state.metrics, chat, start_time)
    decoder = LiveDecoder(feed, scorer.spec, with_audio="audio" in scorer.modalities)
    outbox: asyncio.Queue = asyncio.Queue()

    def work() -> None:  # the scoring thread: decode, score, hand messages to the event loop
        try:
            for item in decoder.windows():
                for message in scorer.score(item, send_scores):
                    loop.call_soon_threadsafe(outbox.put_nowait, message)
            for message in scorer.finish():
                loop.call_soon_threadsafe(outbox.put_nowait, message)
            loop.call_soon_threadsafe(outbox.put_nowait, {"type": "end", "windows": scorer.n_windows,
                                                          "alerts": scorer.n_alerts, "late_chat": scorer.late_chat})
        except Exception as err:  # noqa: BLE001  # media errors end the stream with their one-paragraph message
            from mmapps_domains.surveillance.errors import MediaError

            kind = "media" if isinstance(err, MediaError) else "internal"
            if kind == "internal":
                log.error("live stream failed: %s", type(err).__name__)
            loop.call_soon_threadsafe(outbox.put_nowait, {"type": "_failed", "kind": kind, "message": str(err) if kind == "media" else "internal error"})

    worker = loop.run_in_executor(pool, work)
    sender = asyncio.ensure_future(_send_all(ws, outbox))
    try:
        while not sender.done():
            receive = asyncio.ensure_future(ws.receive())
            await asyncio.wait({receive, sender}, return_when=asyncio.FIRST_COMPLETED)
            if not receive.done():
                receive.cancel()
                break
            message = receive.result()
            if message["type"] == "websocket.disconnect":
                return 1001
            if message.get("bytes") is not None:
                data = message["bytes"]
                if len(data) > settings.max_segment_bytes:
                    state.metrics.input_error("live_segment_too_large")
                    await _close(ws, 1009, f"segment over {settings.max_segment_bytes} bytes; cut shorter segments")
                    return 1009
                if not feed.put(data):
                    state.metrics.input_error("live_overloaded")
                    await _close(ws, OVERLOADED, f"overloaded: {settings.queue_segments} segments already queued; send in real time")
                    return OVERLOADED
            else:
                reply = _text_frame(message.get("text") or "", scorer, feed, settings)
                if reply is not None:
                    await ws.send_json(reply)
        result = sender.result()
    except WebSocketDisconnect:
        return 1001
    finally:
        if not sender.done():  # the client went away or was closed: stop decoding now
            feed.abort()
            sender.cancel()
        await worker
    if result is not None:
        state.metrics.input_error("live_media" if result["kind"] == "media" else "internal")
        await _close(ws, INVALID_DATA if result["kind"] == "media" else 1011, result["message"])
        return INVALID_DATA if result["kind"] == "media" else 1011
    await _close(ws, 1000, "end of stream")
    return 1000


async def _send_all(ws: WebSocket, outbox: asyncio.Queue) -> dict | None:
    """Forward the scoring thread's messages; returns the failure, if any, once the stream ended."""
    while True:
        message = await outbox.get()
        if message["type"] == "_failed":
            return message
        await ws.send_json(message)
        if message["type"] == "end":
            return None


def _text_frame(text: str, scorer: Any, feed: Any, settings: LiveSettings) -> dict | None:
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        return {"type": "error", "message": "a text frame must be JSON: {\"type\": \"chat\", \"t\": seconds, \"text\": ...} or {\"type\": \"end\"}"}
    kind = record.get("type") if isinstance(record, dict) else None
    if kind == "end":
        feed.end()
        return None
    if kind == "chat":
        if len(str(record.get("text", ""))) > settings.max_chat_chars:
            return {"type": "error", "message": f"chat line over {settings.max_chat_chars} characters: dropped"}
        return scorer.add_chat(record)
    return {"type": "error", "message": f"unknown text frame type {str(kind)[:40]!r}; accepted: chat, end"}
