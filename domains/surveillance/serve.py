"""The surveillance domain's served endpoint (its ``Domain.serve`` hook): ``POST /v1/surveillance/predict``.

A clip (+ audio) + its chat log -> timed events. Written as a one-clip data root (`request_root`:
``clips/clip.<ext>``, ``chat/clip.<ext>``, ``mic/clip.wav``, ``manifest.jsonl`` with ``split: test``)
and read by the domain's own ``build_datasets``; the events are its own post-processing
(per-second scores) and its prediction writer's segments. The live WebSocket endpoint is
`live.router` (``WS /v1/surveillance/live``); `HOOKS` hands both to the service.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, File, Form, Request, UploadFile

from mmapps.serve.errors import ServeError
from mmapps.serve.hooks import ServeHooks
from mmapps.serve.request_roots import RequestRoot, new_root
from mmapps.serve.state import ServiceState

CLIP_SUFFIXES = (".mp4", ".ts", ".mkv", ".mov", ".webm")
CHAT_SUFFIXES = (".jsonl", ".csv", ".json")


def _suffix(upload: UploadFile) -> str:
    name = upload.filename or ""
    return "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""


def request_root(clip_suffix: str, clip: bytes, chat_suffix: str | None, chat: bytes | None, audio: bytes | None, base: Path | None = None,
                 start_time: str | None = None) -> RequestRoot:
    """One clip (+ chat log, + microphone track) as a surveillance data root with a one-line ``manifest.jsonl``.

    ``start_time`` (ISO-8601, the wall-clock time of the clip's first frame) goes into the manifest
    entry, as in a dataset: chat lines whose ``t`` is an ISO time are placed by it.
    """
    root = new_root(base)
    entry: dict[str, Any] = {"id": "request", "clip": f"clips/clip{clip_suffix}", "split": "test", "labels": [], "segments": []}
    if start_time is not None:
        entry["start_time"] = start_time
    (root / "clips").mkdir()
    (root / entry["clip"]).write_bytes(clip)
    if chat is not None:
        (root / "chat").mkdir()
        entry["chat"] = f"chat/clip{chat_suffix}"
        (root / entry["chat"]).write_bytes(chat)
    if audio is not None:
        (root / "mic").mkdir()
        entry["audio"] = "mic/clip.wav"
        (root / entry["audio"]).write_bytes(audio)
    (root / "manifest.jsonl").write_text(json.dumps(entry) + "\n")
    return RequestRoot(root)


def add_routes(api: APIRouter, state: ServiceState) -> None:
    """``Domain.serve``: add ``POST /v1/surveillance/predict`` to the service's predict router."""
    from mmapps_domains.surveillance.annotations import _check_start_time

    from mmapps.serve.generic import predictions_file
    from mmapps.serve.pipeline import presence, serve_root
    from mmapps.serve.routes_predict import VERSION_QUERY, answer_header

    state.extra.setdefault("multipart_routes", set()).add("/v1/surveillance/predict")

    @api.post("/v1/surveillance/predict", summary="timed events of one clip (+ audio) and its chat log",
              openapi_extra={"requestBody": {"content": {"multipart/form-data": {"example": {"clip": "<cam3.mp4>", "chat": "<cam3.jsonl>"}}}}})
    async def predict(request: Request,
                      clip: UploadFile = File(..., description=f"the video ({', '.join(CLIP_SUFFIXES)}); its audio track is used when no audio file is sent"),
                      chat: UploadFile | None = File(None, description="chat log: JSON lines {t, user, text} (t in seconds from the clip start) or CSV"),
                      audio: UploadFile | None = File(None, description="a separate microphone recording (.wav)"),
                      start_time: str | None = Form(None, description="ISO-8601 wall-clock time of the clip's first frame (e.g. 2026-05-01T13:00:00); "
                                                    "needed when the chat log's t are ISO times, as a video management system exports them"),
                      version: str | None = VERSION_QUERY) -> dict[str, Any]:
        if _suffix(clip) not in CLIP_SUFFIXES:
            raise ServeError(400, "bad_field", f"clip: file name suffix {_suffix(clip) or '(none)'!r}; accepted {', '.join(CLIP_SUFFIXES)}")
        if chat is not None and _suffix(chat) not in CHAT_SUFFIXES:
            raise ServeError(400, "bad_field", f"chat: file name suffix {_suffix(chat) or '(none)'!r}; accepted {', '.join(CHAT_SUFFIXES)}")
        if start_time is not None:
            try:
                _check_start_time(start_time)
            except ValueError as err:
                raise ServeError(400, "bad_field", f"start_time: {err}") from None
        written = request_root(_suffix(clip), await clip.read(), _suffix(chat) if chat is not None else None, await chat.read() if chat is not None else None,
                               await audio.read() if audio is not None else None, state.extra.get("upload_dir"), start_time)
        served = await serve_root(state, request, written, version)
        prediction = {task: p for task, p in served.predictions[0].tasks.items()}
        return {**answer_header(served, request), "predictions": prediction, "events": predictions_file(served)["text"],
                "presence": presence(served.samples[0], served.loaded.runner)}


def _live_routes(state: ServiceState) -> APIRouter:
    from mmapps_domains.surveillance.live import router

    return router(state)


HOOKS = ServeHooks(routes=add_routes, socket_routes=_live_routes, decoder_imports=("av",))
