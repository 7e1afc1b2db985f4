"""The Open Inference Protocol (KServe v2, as Triton speaks it) on the model's tensors.

``GET /v2``, ``/v2/health/live`` (the event loop answers), ``/v2/health/ready`` (a version loaded,
warmed up, not draining): the status code is the answer, no key needed. Model metadata, model
readiness and ``POST .../infer`` need a ``predict`` key. Inference accepts JSON tensors (at most
``settings.max_json_bytes``) and the binary-tensor extension (``Inference-Header-Content-Length``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from mmapps.serve.errors import ServeError
from mmapps.serve.state import ServiceState
from mmapps.serve.tensors import parse_infer_body, samples_from_tensors, to_output

_V2_KIND = {"text": "BYTES"}


def router(state: ServiceState) -> APIRouter:
    from mmapps.serve.app import require

    api = APIRouter(tags=["v2 (Open Inference Protocol)"])
    name = state.domain.name

    @api.get("/v2", summary="server metadata")
    def server_metadata() -> dict[str, Any]:
        import mmapps

        return {"name": "mmapps", "version": getattr(mmapps, "__version__", "0"), "extensions": ["binary_tensor_data"]}

    @api.get("/v2/health/live", summary="liveness: 200 while the event loop answers")
    def live() -> Response:
        return Response(status_code=200)

    @api.get("/v2/health/ready", summary="readiness: 200 when a version is loaded and warmed up and the server is not draining, else 503")
    def ready() -> Response:
        return Response(status_code=200 if state.ready else 503)

    def check_name(model: str) -> None:
        if model != name:
            raise ServeError(404, "unknown_model", f"model {model!r} is not served here; this server serves {name!r}")

    @api.get("/v2/models/{model}", dependencies=[Depends(require("predict"))], summary="model metadata (active version)")
    @api.get("/v2/models/{model}/versions/{version}", dependencies=[Depends(require("predict"))], summary="model metadata")
    def metadata(model: str, version: str | None = None) -> dict[str, Any]:
        check_name(model)
        loaded = state.versions.get(version)
        runner = loaded.runner
        inputs = []
        for m, layout in sorted(runner.modality_to_layout.items()):
            observed = runner.observed_shapes.get(m)
            tail = [] if observed is None else list(observed)
            if layout == "padded" and tail:
                tail[0] = -1
            shape = [-1] if layout == "text" else [-1, *(tail[-1:] if layout == "packed" else tail)]
            inputs.append({"name": m, "datatype": _V2_KIND.get(layout, "FP32"), "shape": shape, "parameters": {"layout": layout, "optional": True}})
        return {"name": name, "versions": sorted(state.versions.versions), "platform": "mmapps_pytorch", "inputs": inputs,
                "outputs": [{"name": t.name, "datatype": "FP32", "shape": [-1, -1], "parameters": {"labels": list(t.labels)}} for t in runner.domain.tasks],
                "parameters": {"version": loaded.name, "sha256": runner.sha256}}

    @api.get("/v2/models/{model}/ready", dependencies=[Depends(require("predict"))], summary="model readiness (status code)")
    @api.get("/v2/models/{model}/versions/{version}/ready", dependencies=[Depends(require("predict"))], summary="version readiness (status code)")
    def model_ready(model: str, version: str | None = None) -> Response:
        check_name(model)
        ok = state.ready and (version is None or version in state.versions.versions)
        return Response(status_code=200 if ok else 503)

    @api.post("/v2/models/{model}/infer", dependencies=[Depends(require("predict"))], summary="inference on tensors (active version)")
    @api.post("/v2/models/{model}/versions/{version}/infer", dependencies=[Depends(require("predict"))], summary="inference on tensors")
    async def infer(model: str, request: Request, version: str | None = None) -> Response:
        check_name(model)
        length = request.headers.get("inference-header-content-length")
        body = await request.body()
        json_part = int(length) if length and length.isdigit() else len(body)
        if json_part > state.settings.max_json_bytes:
            raise ServeError(413, "too_large", f"JSON part of {json_part} bytes over the limit of {state.settings.max_json_bytes} (--max-json-mb); "
                             "send large tensors with the binary tensor extension (tritonclient's binary_data=True)")
        payload, tensors = parse_infer_body(body, length)
        loaded = state.versions.get(version)
        request.state.model, request.state.version, request.state.sha256 = name, loaded.name, loaded.runner.sha256
        samples = samples_from_tensors(tensors, loaded.runner.modality_to_layout)
        async with state.admission.slot():  # 503 + Retry-After when the model path is full
            try:
                predictions = await asyncio.wait_for(loaded.raw_batcher.submit(samples), state.settings.request_timeout_s)
            except asyncio.TimeoutError:
                raise ServeError(504, "timeout", f"the model did not answer within {state.settings.request_timeout_s:g} s (--timeout); retry later") from None
        requested = [o.get("name") for o in payload.get("outputs") or [] if isinstance(o, dict)]
        binary_of = {o.get("name"): bool((o.get("parameters") or {}).get("binary_data")) for o in payload.get("outputs") or [] if isinstance(o, dict)}
        binary_default = bool((payload.get("parameters") or {}).get("binary_data_output"))
        names = sorted(predictions[0].raw) if predictions else []
        missing = [n for n in requested if n not in names]
        if missing:
            raise ServeError(400, "bad_tensor", f"outputs {missing}: not outputs of this model; it has {names}")
        outputs, blobs = [], []
        for out in requested or names:
            entry, raw = to_output(out, np.stack([p.raw[out] for p in predictions]), binary_of.get(out, binary_default))
            outputs.append(entry)
            blobs.append(raw)
        answer = {"model_name": name, "model_version": loaded.name, "outputs": outputs}
        if "id" in payload:
            answer["id"] = str(payload["id"])[:128]
        head = json.dumps(answer).encode()
        if any(blobs):
            return Response(head + b"".join(blobs), media_type="application/octet-stream", headers={"Inference-Header-Content-Length": str(len(head))})
        return Response(head, media_type="application/json")

    return api
