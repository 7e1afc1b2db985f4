"""``create_app(state) -> FastAPI``: the service's routes, auth, limits, audit and the monitoring plug-in points.

Contract:

- Every route but ``GET /v2``, ``/v2/health/live`` and ``/v2/health/ready`` needs an API key
  (``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; never the query string); scopes are
  checked by the `require` dependency: ``predict`` for predictions and inference, ``admin`` for
  versions, reload, ``/metrics`` and ``/docs``.
- The outer ASGI middleware (`ServiceMiddleware`) gives each request an id (``X-Request-ID``,
  echoed or made), refuses bodies over ``settings.max_body_bytes`` (413, from ``Content-Length``
  and while streaming), counts in-flight requests (drain on SIGTERM), reports
  ``metrics.request(endpoint, status, seconds)`` by route template and writes one audit line.
- Errors are `ServeError` (status, class, one paragraph) rendered as
  ``{"error": <paragraph>, "class": <class>, "request_id": ...}``; a validation error names the
  field and what is accepted, never the value sent; an unexpected error is a 500 naming only the
  request id. Every error class is counted by ``metrics.input_error(class)``.
- A domain's routes that check their key themselves (``ServeHooks.socket_routes``, e.g. the
  surveillance live WebSocket) are included at the application level; `mmapps.serve.tracing`'s
  ``install(app, state)`` adds trace propagation and JSON logs.
- CORS is closed: no CORS middleware, so browsers refuse cross-origin calls.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from mmapps.serve.auth import ApiKey
from mmapps.serve.errors import ServeError
from mmapps.serve.limits import retry_after
from mmapps.serve.state import ServiceState

log = logging.getLogger("mmapps.serve")
OPEN_PATHS = ("/v2", "/v2/health/live", "/v2/health/ready")


class ServiceMiddleware:
    """Request id, body limit, in-flight count, request metrics and the audit line (pure ASGI: streams untouched)."""

    def __init__(self, app: Any, state: ServiceState) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state, start = self.state, time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        request_id = _clean_request_id(headers.get("x-request-id")) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        limit = state.settings.max_body_bytes
        status = {"code": 500}

        async def send_with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode()), (b"server-timing", _server_timing(scope["state"], start))]
            await send(message)

        seen = {"bytes": 0}

        async def limited_receive() -> dict:
            message = await receive()
            if message["type"] == "http.request":
                seen["bytes"] += len(message.get("body", b""))
                if seen["bytes"] > limit:
                    raise _TooLarge()
            return message

        state.in_flight += 1
        endpoint = scope.get("path", "")
        try:
            declared = headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                await _send_error(send_with_id, _too_large(limit), request_id, state)
            else:
                try:
                    await self.app(scope, limited_receive, send_with_id)
                except _TooLarge:  # raised outside body parsing (a streaming reader)
                    await _send_error(send_with_id, _too_large(limit), request_id, state)
        finally:
            state.in_flight -= 1
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or ("(unmatched)" if status["code"] == 404 else endpoint)
            seconds = time.perf_counter() - start
            state.metrics.request(endpoint, status["code"], seconds)
            info = scope["state"]
            if endpoint not in ("/v2/health/live", "/v2/health/ready"):
                state.audit.write(request_id=request_id, key_id=info.get("key_id"), endpoint=endpoint, method=scope.get("method"),
                                  status=status["code"], latency_ms=round(seconds * 1000, 2), model=info.get("model"), version=info.get("version"),
                                  sha256=info.get("sha256"), error_class=info.get("error_class"), shadow_version=info.get("shadow_version"))


class _TooLarge(HTTPException):
    """Raised while streaming a body past the limit; an HTTPException so that body parsing lets it through."""

    def __init__(self) -> None:
        super().__init__(413, "too_large")


def _too_large(limit: int) -> ServeError:
    return ServeError(413, "too_large", f"request body over the limit of {limit} bytes ({limit / 2**20:.1f} MiB, --max-body-mb); "
                      "send fewer or smaller files, or ask the operator to raise the limit")


def _server_timing(info: dict, start: float) -> bytes:
    """W3C Server-Timing: ``app`` (the server's whole time so far) and, for a served prediction, ``pipeline`` (decode -> model).

    A client's latency minus ``pipeline`` is the HTTP overhead of that very request (benchmarks/serve_load.py).
    """
    parts = [f"app;dur={(time.perf_counter() - start) * 1000:.3f}"]
    if (pipeline := info.get("pipeline_s")) is not None:
        parts.append(f"pipeline;dur={pipeline * 1000:.3f}")
    return ", ".join(parts).encode()


def _clean_request_id(value: str | None) -> str | None:
    if value and len(value) <= 64 and all(c.isalnum() or c in "-_." for c in value):
        return value
    return None


async def _send_error(send: Callable, err: ServeError, request_id: str, state: ServiceState) -> None:
    state.metrics.input_error(err.kind)
    response = _error_response(err, request_id)
    await response({"type": "http"}, None, send)  # type: ignore[arg-type]


def _error_response(err: ServeError, request_id: str) -> JSONResponse:
    return JSONResponse({"error": err.message, "class": err.kind, "request_id": request_id}, status_code=err.status, headers=err.headers)


def secret_from(request: Request) -> str | None:
    """The presented key: ``Authorization: Bearer <key>`` or ``X-API-Key``; the query string is never read."""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("x-api-key")


def require(scope: str) -> Callable[[Request], ApiKey]:
    """A FastAPI dependency: the caller's key, allowed for ``scope`` and within its rate (else 401 / 403 / 429)."""

    def dependency(request: Request) -> ApiKey:
        state: ServiceState = request.app.state.service
        key = state.keys.check(secret_from(request)) if state.keys is not None else None
        if key is None:
            state.audit.write(request_id=request.state.request_id, endpoint=request.url.path, event="auth_failure",
                              reason="no key" if not secret_from(request) else "unknown key")
            raise ServeError(401, "unauthorized", "no valid API key: send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>' "
                             "(keys are issued by the operator; see docs/deploy.md, Serving)", {"WWW-Authenticate": "Bearer"})
        request.state.key_id = key.key_id
        if not key.allows(scope):
            state.audit.write(request_id=request.state.request_id, key_id=key.key_id, endpoint=request.url.path, event="auth_failure", reason=f"scope {scope} missing")
            raise ServeError(403, "forbidden", f"key {key.key_id!r} lacks the {scope!r} scope this endpoint needs (it has {', '.join(sorted(key.scopes))})")
        wait = state.limiter.take(key.key_id)
        if wait > 0:
            raise ServeError(429, "rate_limited", f"key {key.key_id!r} is over its rate limit of {state.settings.rate_per_key:g} requests/s "
                             f"(burst {state.settings.rate_burst}); retry after the Retry-After seconds", {"Retry-After": retry_after(wait)})
        return key

    return dependency


def create_app(state: ServiceState) -> FastAPI:
    """The service for one domain: health and v2 routes, the domain's predict routes, admin routes, monitoring."""
    from mmapps.serve import routes_admin, routes_predict, routes_v2

    app = FastAPI(title=f"mmapps {state.domain.name}", version="1", docs_url=None, redoc_url=None, openapi_url=None,
                  description=f"{state.domain.description}. Every endpoint but /v2 and /v2/health/* needs an API key.")
    app.state.service = state

    @app.exception_handler(ServeError)
    async def serve_error(request: Request, err: ServeError) -> JSONResponse:
        state.metrics.input_error(err.kind)
        request.state.error_class = err.kind
        return _error_response(err, request.state.request_id)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        if isinstance(err, _TooLarge):
            return await serve_error(request, _too_large(state.settings.max_body_bytes))
        kind = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code, "http")
        detail = {404: f"no endpoint {request.url.path}; see /docs (admin scope) or docs/deploy.md for the endpoints",
                  405: f"{request.method} is not accepted on {request.url.path}"}.get(err.status_code, str(err.detail))
        return await serve_error(request, ServeError(err.status_code, kind, detail, dict(err.headers or {})))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
        content_type = request.headers.get("content-type", "")
        if request.url.path in state.extra.get("multipart_routes", ()) and not content_type.startswith("multipart/form-data"):
            return await serve_error(request, ServeError(415, "wrong_content_type", f"content type {content_type.split(';')[0] or 'none'!r}: "
                                                         "this endpoint accepts multipart/form-data (files as file parts, text as form fields; curl -F)"))
        parts = []
        for item in err.errors()[:5]:  # the field and the expectation, never the value sent
            where = ".".join(str(p) for p in item.get("loc", ()) if p != "body") or "body"
            parts.append(f"{where}: {item.get('msg', 'invalid')}")
        return await serve_error(request, ServeError(422, "bad_request", "the request does not have the expected shape: " + "; ".join(parts)
                                                     + "; see /docs (admin scope) or docs/deploy.md for the accepted fields"))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception) -> JSONResponse:
        log.error("request %s failed: %s", request.state.request_id, type(err).__name__)  # no message: it may hold input values
        return await serve_error(request, ServeError(500, "internal", f"internal error while serving request {request.state.request_id}; the operator's log has its class"))

    for router in (routes_v2.router(state), routes_predict.router(state), routes_admin.router(state)):
        app.include_router(router)
    _install_docs(app, state)
    _install_monitoring(app, state)
    app.add_middleware(ServiceMiddleware, state=state)
    return app


def _install_docs(app: FastAPI, state: ServiceState) -> None:
    from fastapi.openapi.docs import get_swagger_ui_html

    @app.get("/metrics", include_in_schema=False, dependencies=[Depends(require("admin"))])
    def metrics() -> Response:
        if hasattr(state.metrics, "ready"):
            state.metrics.ready(state.ready)
        body, content_type = state.metrics.render()
        return Response(body, media_type=content_type)

    if not state.settings.docs:
        return

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(require("admin"))])
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=[Depends(require("admin"))])
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=app.title)


def _install_monitoring(app: FastAPI, state: ServiceState) -> None:
    from mmapps.serve import tracing
    from mmapps.serve.hooks import serve_hooks

    socket_routes = serve_hooks(state.domain).socket_routes
    if socket_routes is not None:
        app.include_router(socket_routes(state))
    tracing.install(app, state)
