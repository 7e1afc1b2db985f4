"""The path every raw-format request takes: written root -> decoder child -> batcher -> answer, shadow, drift.

``await serve_root(state, request, written, version)`` returns the version used, the samples
(decoded and de-identified) and their predictions. It times out as a whole
(``settings.request_timeout_s``), stores de-identified inputs when ``--store-inputs`` asks,
scores the shadow version after the answer is ready and hands scores and input facts (presence,
view, image statistics, never text: `mmapps.serve.input_profile`) to the monitoring's ``observe``.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import yaml
from fastapi import Request

from mmapps.serve.errors import ServeError
from mmapps.serve.hooks import serve_hooks
from mmapps.serve.input_profile import sample_facts
from mmapps.serve.request_roots import RequestRoot
from mmapps.serve.state import ServiceState

TEXT_SUFFIXES = (".txt", ".csv", ".json", ".jsonl", ".xml", ".srt", ".vtt")


@dataclass
class Served:
    loaded: Any  # versions.LoadedVersion
    samples: list[Any]
    predictions: list[Any]  # runner.Prediction per sample


def job_config(runner: Any, written: RequestRoot) -> dict[str, Any]:
    """The run config for the decoder: the model's own, on the written root, without the sample cache."""
    from mmapps.config import config_to_yaml

    values = yaml.safe_load(config_to_yaml(runner.cfg))
    values["data"]["root"] = str(written.root)
    values["data"]["on_error"] = "stop"
    values["data"]["options"] = {**(values["data"].get("options") or {}), **written.options}
    values.setdefault("cache", {})["enabled"] = False  # served inputs are never cached
    return values


def decode_job(state: ServiceState, runner: Any, written: RequestRoot) -> dict[str, Any]:
    """The decoder child's job for one written upload (`mmapps.serve.decode_worker`).

    Raises:
        ServeError: 415 when the upload asks for de-identification and the domain has no
            de-identifier (``ServeHooks.prepare_upload``): it is never read as it is.
    """
    job = {"domain": state.domain.name, "config": job_config(runner, written), "root": str(written.root), "reader": written.reader,
           "caps": {"max_pixels": state.settings.max_pixels, "max_frames": state.settings.max_frames, "max_points": state.settings.max_points}}
    if written.deidentify:
        prepare = serve_hooks(state.domain).prepare_upload
        if prepare is None:
            written.cleanup()
            raise ServeError(415, "no_deidentifier", f"the upload holds DICOM files, and the {state.domain.name} domain declares no "
                             "de-identifier (ServeHooks.prepare_upload); DICOM is accepted only by domains that de-identify it")
        job["deid_key"], job["prepare_upload"] = state.extra["deid_key"].hex(), prepare
    return job


def presence(sample: Any, runner: Any) -> dict[str, bool]:
    """Modality -> whether the model saw it for this sample (`mmapps.data.sample.input_present`)."""
    from mmapps.data.sample import input_present

    return {m: input_present(sample.inputs.get(m), runner.domain.modality(m).layout) for m in runner.modalities}


def scores_of(predictions: list[Any]) -> dict[str, np.ndarray]:
    """task -> (N, L) scores, for tasks whose predictions carry a flat ``scores`` list."""
    out = {}
    for task in predictions[0].tasks if predictions else ():
        rows = [p.tasks[task].get("scores") for p in predictions]
        if all(isinstance(r, list) for r in rows):
            try:
                out[task] = np.asarray(rows, dtype=np.float32)
            except ValueError:
                continue
    return out


async def serve_root(state: ServiceState, request: Request, written: RequestRoot, version: str | None) -> Served:
    started = time.perf_counter()
    loaded = state.versions.get(version)
    runner = loaded.runner
    request.state.model, request.state.version, request.state.sha256 = state.domain.name, loaded.name, runner.sha256
    job = decode_job(state, runner, written)
    try:
        async with state.admission.slot():  # 503 + Retry-After when the model path is full (load shedding)
            samples, predictions = await _decode_and_predict(state, request, written, job, loaded)
    finally:
        written.cleanup()
    facts = sample_facts(samples, {m: runner.domain.modality(m).kind for m in runner.modalities}, {m: runner.domain.modality(m).layout for m in runner.modalities})
    state.metrics.observe(state.domain.name, loaded.name, scores_of(predictions), facts)
    shadow = state.versions.shadow
    if shadow and shadow != loaded.name:
        request.state.shadow_version = shadow
        asyncio.get_running_loop().create_task(_score_shadow(state, shadow, samples, facts))
    request.state.pipeline_s = time.perf_counter() - started  # decode -> model -> observe: the Server-Timing header's `pipeline`
    return Served(loaded, samples, predictions)


async def _decode_and_predict(state: ServiceState, request: Request, written: RequestRoot, job: dict[str, Any], loaded: Any) -> tuple[list, list]:
    timeout = state.settings.request_timeout_s
    try:
        try:
            samples = await asyncio.wait_for(asyncio.to_thread(state.decoders.decode, job), timeout)
        except asyncio.TimeoutError:
            raise ServeError(504, "timeout", f"decoding the upload did not finish within {timeout:g} s (--timeout); retry later") from None
        if state.settings.store_inputs is not None:
            store_inputs(state, request.state.request_id, written)
    finally:
        written.cleanup()
    try:
        predictions = await asyncio.wait_for(loaded.batcher.submit(samples), timeout)
    except asyncio.TimeoutError:
        raise ServeError(504, "timeout", f"the model did not answer within {timeout:g} s (--timeout); retry later") from None
    return samples, predictions


async def _score_shadow(state: ServiceState, name: str, samples: list[Any], facts: dict[str, list]) -> None:
    try:
        shadow = state.versions.get(name)
        predictions = await shadow.batcher.submit(samples)
    except (ServeError, RuntimeError, ValueError):
        return  # a shadow never affects the service; its failures show as missing shadow scores
    state.metrics.observe(state.domain.name, name, scores_of(predictions), facts)


def store_inputs(state: ServiceState, request_id: str, written: RequestRoot) -> None:
    """Copy the de-identified inputs (never notes, chat or other text files) to ``--store-inputs``/<request id>/."""
    target = state.settings.store_inputs / request_id
    for path in sorted(p for p in written.root.rglob("*") if p.is_file()):
        if path.suffix.lower() in TEXT_SUFFIXES:
            continue
        destination = target / path.relative_to(written.root)
        destination.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        shutil.copyfile(path, destination)
