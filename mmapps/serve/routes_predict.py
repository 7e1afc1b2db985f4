"""The domain endpoints on raw formats: ``POST /v1/<domain>/predict`` (multipart).

A domain that declares ``Domain.serve`` adds its own form shaped like its data (the built-in
ones in ``domains/<d>/serve.py``: medical DICOM files + note, driving LiDAR + camera + calib,
surveillance clip + audio + chat log); every domain, third-party plugins included, also gets ``POST /v1/<domain>/predict-files``: the files of a small data root at
the relative paths its plugin documents, read by the plugin's own ``build_datasets`` and
answered as the plugin's own prediction file (its ``write_predictions``) plus JSON. No web
code is needed in a plugin.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile

from mmapps.serve.errors import ServeError
from mmapps.serve.hooks import serve_hooks
from mmapps.serve.pipeline import serve_root
from mmapps.serve.request_roots import files_root
from mmapps.serve.state import ServiceState

VERSION_QUERY = Query(None, description="a loaded version (default: the active one)", examples=["v1"], pattern=r"^[A-Za-z0-9_.-]{1,64}$")


async def read_uploads(state: ServiceState, files: list[UploadFile], what: str) -> list[bytes]:
    if not files:
        raise ServeError(400, "missing_file", f"no {what} file sent; send at least one as a multipart file field")
    if len(files) > state.settings.max_files:
        raise ServeError(413, "too_many_files", f"{len(files)} {what} files sent; at most {state.settings.max_files} are accepted (--max-files)")
    return [await f.read() for f in files]


def answer_header(served: Any, request: Request) -> dict[str, Any]:
    runner = served.loaded.runner
    return {"model": runner.domain.name, "version": served.loaded.name, "sha256": runner.sha256, "request_id": request.state.request_id}


def router(state: ServiceState) -> APIRouter:
    from mmapps.serve.app import require

    name = state.domain.name
    api = APIRouter(tags=[name], dependencies=[Depends(require("predict"))])
    state.extra.setdefault("multipart_routes", set()).add(f"/v1/{name}/predict-files")

    @api.post(f"/v1/{name}/predict-files", summary=f"predict on a small {name} data root (the plugin's own readers and prediction writer)",
              response_description="the domain's predictions as JSON and its prediction file's text")
    async def predict_files(request: Request, files: list[UploadFile] = File(..., description="files of a data root; each part's filename is its relative path, e.g. image/s0.png, samples.csv"),
                            version: str | None = VERSION_QUERY) -> dict[str, Any]:
        from mmapps.serve.generic import predictions_file

        datas = await read_uploads(state, files, "data")
        written = files_root([(f.filename or "", d) for f, d in zip(files, datas)], state.extra.get("upload_dir"))
        served = await serve_root(state, request, written, version)
        return {**answer_header(served, request), "samples": [{"sample_id": p.sample_id, **p.tasks} for p in served.predictions],
                "prediction_file": predictions_file(served)}

    hooks = serve_hooks(state.domain)
    if hooks.routes is not None:  # the domain's own endpoints on its raw formats (Domain.serve)
        hooks.routes(api, state)
    return api
