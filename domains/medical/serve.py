"""The medical domain's served endpoint (its ``Domain.serve`` hook): ``POST /v1/medical/predict``.

DICOM files of one study + the note -> per-finding probability and the decision at the
validation-chosen threshold. The upload is written as a one-study data root (`request_root`:
``images/image-<i>.dcm`` + ``manifest.csv``, ``split=test``, the note inline) that the domain's own
``build_datasets`` reads in a decoder child.

The DICOM files are de-identified (the medical domain's PS3.15 de-identifier) in the decoder
child before they are read, stored or logged (`HOOKS.prepare_upload`:
`deid.uploads.deidentify_upload`); the answer names no patient. ``gradcam=true``
adds the Grad-CAM map of the first (frontal-first) image for the top finding (or ``finding``)
as a base64 PNG, computed with the domain's own batched Grad-CAM.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import io
from pathlib import Path
from typing import Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from pydantic import BaseModel, Field

from mmapps.serve.errors import ServeError
from mmapps.serve.hooks import ServeHooks
from mmapps.serve.request_roots import RequestRoot, new_root
from mmapps.serve.state import ServiceState

NOTE_KINDS = ("referral", "request", "indication", "history", "clinical", "context", "report")


class Finding(BaseModel):
    label: str = Field(..., examples=["Cardiomegaly"])
    probability: float = Field(..., examples=[0.82])
    threshold: float | None = Field(None, description="chosen on the validation split (Youden's J unless the run chose otherwise)", examples=[0.41])
    decision: bool | None = Field(None, description="probability >= threshold; null when the run stored no threshold", examples=[True])


class MedicalAnswer(BaseModel):
    model: str = Field(..., examples=["medical"])
    version: str = Field(..., examples=["v1"])
    sha256: str = Field(..., description="SHA-256 of the served artifact", examples=["d638d093c298911294837992abb8f97ea749bdb39dd83ad6709a7da8f034dad0"])
    request_id: str
    findings: list[Finding]
    presence: dict[str, bool] = Field(..., description="modalities the model saw (a missing note is served with presence false)", examples=[{"image": True, "note": True}])
    views: list[str | None] = Field(..., description="view of each image used, frontal first", examples=[["PA", "LATERAL"]])
    gradcam: dict[str, Any] | None = Field(None, description="{finding, png_base64} when gradcam=true")


def request_root(dicoms: list[bytes], note: str | None, note_kind: str | None, findings: list[str], base: Path | None = None) -> RequestRoot:
    """One study: the DICOM files in upload order (de-identified in the decoder child before they are read), the note inline (or none)."""
    root = new_root(base)
    (root / "images").mkdir()
    paths = []
    for i, data in enumerate(dicoms):
        (root / "images" / f"image-{i}.dcm").write_bytes(data)
        paths.append(f"images/image-{i}.dcm")
    columns = ["study_id", "subject_id", "dicom_paths", "note_text", "note_kind", "split", *findings]
    with open(root / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerow({"study_id": "request", "subject_id": "request", "dicom_paths": ";".join(paths), "note_text": note or "", "note_kind": note_kind or "", "split": "test"})
    return RequestRoot(root, deidentify=True)


def add_routes(api: APIRouter, state: ServiceState) -> None:
    """``Domain.serve``: add ``POST /v1/medical/predict`` to the service's predict router."""
    from mmapps.serve.pipeline import presence, serve_root
    from mmapps.serve.routes_predict import VERSION_QUERY, answer_header, read_uploads

    state.extra.setdefault("multipart_routes", set()).add("/v1/medical/predict")

    @api.post("/v1/medical/predict", response_model=MedicalAnswer, summary="findings of one chest X-ray study (DICOM files + note)",
              openapi_extra={"requestBody": {"content": {"multipart/form-data": {"example": {"dicom": ["<PA.dcm>", "<LL.dcm>"], "note": "INDICATION: Cough and fever. HISTORY: Smoker.", "note_kind": "referral"}}}}})
    async def predict(request: Request,
                      dicom: list[UploadFile] = File(..., description="the study's DICOM Part 10 files (CR/DX), one or more"),
                      note: str | None = Form(None, description="the note text (clinical context); omit it and the model runs image-only"),
                      note_kind: str | None = Form(None, description=f"what the note is: {', '.join(NOTE_KINDS)}; blank: judged from its section headers"),
                      gradcam: bool = Form(False, description="add the Grad-CAM map of the first image as PNG"),
                      finding: str | None = Form(None, description="the finding whose Grad-CAM map is drawn (default: the most probable)"),
                      version: str | None = VERSION_QUERY) -> dict[str, Any]:
        if note_kind and note_kind not in NOTE_KINDS:
            raise ServeError(400, "bad_field", f"note_kind: expected one of {', '.join(NOTE_KINDS)} or blank")
        if gradcam and not state.settings.gradcam:
            raise ServeError(400, "bad_field", "gradcam: Grad-CAM maps are switched off on this server (--no-gradcam)")
        datas = await read_uploads(state, dicom, "DICOM")
        findings = list(state.versions.get(version).runner.labels["findings"])
        written = request_root(datas, note if note and note.strip() else None, note_kind, findings, state.extra.get("upload_dir"))
        served = await serve_root(state, request, written, version)
        sample, prediction = served.samples[0], served.predictions[0].tasks["findings"]
        labels = served.loaded.runner.labels["findings"]
        thresholds = prediction.get("thresholds") or [None] * len(labels)
        decisions = prediction.get("decisions") or [None] * len(labels)
        answer = {**answer_header(served, request),
                  "findings": [{"label": lab, "probability": p, "threshold": t, "decision": d} for lab, p, t, d in zip(labels, prediction["scores"], thresholds, decisions)],
                  "presence": presence(sample, served.loaded.runner),
                  "views": list(sample.meta.get("views") or [])}
        if gradcam:
            index = labels.index(finding) if finding in labels else max(range(len(labels)), key=lambda j: prediction["scores"][j])
            if finding is not None and finding not in labels:
                raise ServeError(400, "bad_field", f"finding: expected one of the model's findings {labels}")
            answer["gradcam"] = {"finding": labels[index], "png_base64": await asyncio.to_thread(gradcam_png, served.loaded.runner, sample, index)}
        return answer


def gradcam_png(runner: Any, sample: Any, finding: int) -> str:
    """The Grad-CAM map of the sample's first image for ``finding``, as base64 PNG (8-bit grey, the model's input size)."""
    import numpy as np
    from mmapps_domains.medical.gradcam import batched_gradcam, target_layer
    from PIL import Image

    image = sample.inputs["image"][:1]  # (1, 1, S, S)
    with runner._lock:
        layer = target_layer(runner.model, image)
        cam = batched_gradcam(runner.model, layer, image, [sample.inputs.get("note")], [finding])  # (1, 1, S, S)
    pixels = (cam[0, 0].clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


HOOKS = ServeHooks(routes=add_routes, decoder_imports=("pydicom", "mmapps_domains.medical.deid"),
                   prepare_upload="mmapps_domains.medical.deid.uploads:deidentify_upload")
