"""The domain endpoints on raw formats: ``POST /v1/<domain>/predict`` (filled in by `mmapps.serve.predict_*`)."""

from __future__ import annotations

from fastapi import APIRouter

from mmapps.serve.state import ServiceState


def router(state: ServiceState) -> APIRouter:
    return APIRouter(tags=[state.domain.name])
