"""Admin endpoints (``admin`` scope): versions, load, activate, rollback, shadow, unload, model cards.

Every admin action is written to the audit log (``event``: the action; ``version``: its target).
A load runs in a worker thread while the other versions keep serving; the new version answers
only after its warm-up, and becomes active only when asked (``activate=true``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from mmapps.errors import MmappsError
from mmapps.serve.errors import ServeError
from mmapps.serve.state import ServiceState


class LoadRequest(BaseModel):
    """A model to load beside the served ones."""

    source: str = Field(..., description="a .safetensors checkpoint or an export folder, on the server's disk", examples=["runs/medical-v2/checkpoints/best.safetensors"])
    version: str | None = Field(None, description="version name (default: the first 12 hex digits of its hash)", examples=["v2"], pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    activate: bool = Field(False, description="switch to it once loaded and warmed up")


class ShadowRequest(BaseModel):
    version: str | None = Field(None, description="version scored in the shadow of the active one (null: none)", examples=["v2"])


def router(state: ServiceState) -> APIRouter:
    from mmapps.serve.app import require

    api = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require("admin"))])

    def audit(request: Request, event: str, version: str | None) -> None:
        state.audit.write(request_id=request.state.request_id, key_id=getattr(request.state, "key_id", None), endpoint=request.url.path, event=event, version=version)

    @api.get("/versions", summary="loaded versions, the active one and the shadow")
    def versions() -> dict[str, Any]:
        return {"model": state.domain.name, "active": state.versions.active, "shadow": state.versions.shadow, "versions": state.versions.describe()}

    @api.post("/versions", summary="load a version beside the served ones (warmed up before it is offered)")
    async def load(body: LoadRequest, request: Request) -> dict[str, Any]:
        source = Path(body.source).expanduser()
        try:
            loaded = await state.versions.load_async(source, state.domain, body.version, body.activate)
        except MmappsError as err:
            raise ServeError(400, "bad_model", str(err)) from None
        except FileNotFoundError as err:
            raise ServeError(400, "bad_model", f"source {source}: not found ({err.strerror})") from None
        audit(request, "load" + ("+activate" if body.activate else ""), loaded.name)
        return loaded.describe(state.versions.active, state.versions.shadow)

    @api.post("/versions/{version}/activate", summary="switch to a loaded version (requests in flight finish on the old one)")
    def activate(version: str, request: Request) -> dict[str, Any]:
        state.versions.activate(version)
        audit(request, "activate", version)
        return versions()

    @api.post("/rollback", summary="re-activate the version active before the last switch")
    def rollback(request: Request) -> dict[str, Any]:
        name = state.versions.rollback()
        audit(request, "rollback", name)
        return versions()

    @api.put("/shadow", summary="score another version in the shadow of the active one (metrics only)")
    def shadow(body: ShadowRequest, request: Request) -> dict[str, Any]:
        state.versions.set_shadow(body.version)
        audit(request, "shadow", body.version)
        return versions()

    @api.delete("/versions/{version}", summary="unload a version that is not active")
    def unload(version: str, request: Request) -> dict[str, Any]:
        state.versions.unload(version)
        audit(request, "unload", version)
        return versions()

    @api.get("/versions/{version}/card", summary="the model card of a version")
    def card(version: str) -> dict[str, Any]:
        return state.versions.get(version).card

    return api
