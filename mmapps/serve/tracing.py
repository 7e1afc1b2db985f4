"""OpenTelemetry tracing of the service, with W3C ``traceparent`` propagation.

`install(app, state)` (called by `mmapps.serve.app.create_app`) adds `TracingMiddleware`: one
SERVER span per HTTP request or WebSocket stream, a child of the caller's ``traceparent`` when
one is sent (the W3C Trace Context propagator), named ``"<METHOD> <route template>"`` with the
attributes ``http.request.method``, ``http.route``, ``http.response.status_code`` and
``mmapps.request_id``: never the URL's query, the body or a header value, so no identifier, note
or chat text reaches a trace. Code inside a request opens child spans with `span`.

The exporter is optional and chosen the OpenTelemetry way, by environment: ``OTEL_TRACES_EXPORTER``
= ``none`` (default: spans are made and propagated, not exported), ``console`` (JSON on stdout) or
``otlp`` (needs ``pip install opentelemetry-exporter-otlp``; endpoint from
``OTEL_EXPORTER_OTLP_ENDPOINT``); ``OTEL_SERVICE_NAME`` names the service (``mmapps-<domain>``).
A test passes its own provider in ``state.extra["tracer_provider"]``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode

from mmapps.errors import ConfigError

TRACER_NAME = "mmapps.serve"


def build_provider(service_name: str, environ: dict[str, str] | None = None) -> TracerProvider:
    """A tracer provider with the exporter named by ``OTEL_TRACES_EXPORTER`` (see the module docstring)."""
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    env = os.environ if environ is None else environ
    provider = TracerProvider(resource=Resource.create({"service.name": env.get("OTEL_SERVICE_NAME", service_name)}))
    exporter = env.get("OTEL_TRACES_EXPORTER", "none").strip().lower()
    if exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter,
            )
        except ImportError:
            raise ConfigError("OTEL_TRACES_EXPORTER=otlp needs the OTLP exporter: pip install opentelemetry-exporter-otlp "
                              "(or set OTEL_TRACES_EXPORTER=console or none)") from None
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    elif exporter not in ("none", ""):
        raise ConfigError(f"OTEL_TRACES_EXPORTER={exporter!r} is not supported; accepted: none, console, otlp")
    return provider


class TracingMiddleware:
    """Pure ASGI middleware: one SERVER span per request or WebSocket, parented by ``traceparent``."""

    def __init__(self, app: Any, tracer: trace.Tracer) -> None:
        self.app, self.tracer = app, tracer

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        carrier = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])
                   if k.lower() in (b"traceparent", b"tracestate")}
        method = scope.get("method", "WS")
        status = {"code": None}

        async def send_status(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            elif message["type"] == "websocket.close":
                status["code"] = message.get("code", 1000)
            await send(message)

        with self.tracer.start_as_current_span(f"{method} request", context=propagate.extract(carrier), kind=SpanKind.SERVER,
                                               record_exception=False, set_status_on_exception=False) as current:
            current.set_attribute("http.request.method", method)
            try:
                await self.app(scope, receive, send_status)
            except Exception as err:
                current.set_status(Status(StatusCode.ERROR, type(err).__name__))
                raise
            finally:
                route = getattr(scope.get("route"), "path", None) or "(unmatched)"
                current.update_name(f"{method} {route}")
                current.set_attribute("http.route", route)
                request_id = (scope.get("state") or {}).get("request_id")
                if request_id:
                    current.set_attribute("mmapps.request_id", request_id)
                if status["code"] is not None:
                    current.set_attribute("http.response.status_code" if scope["type"] == "http" else "websocket.close_code", status["code"])
                    if scope["type"] == "http" and status["code"] >= 500:
                        current.set_status(Status(StatusCode.ERROR))


def install(app: Any, state: Any) -> None:
    """Add tracing to the app (the provider: ``state.extra["tracer_provider"]``, else one from the environment)."""
    provider = state.extra.get("tracer_provider")
    if provider is None:
        provider = build_provider(f"mmapps-{getattr(state.domain, 'name', 'service')}")
        state.extra["tracer_provider"] = provider
    app.add_middleware(TracingMiddleware, tracer=provider.get_tracer(TRACER_NAME))


def tracer(state: Any) -> trace.Tracer:
    """The service's tracer (for child spans inside a request)."""
    provider = state.extra.get("tracer_provider")
    return provider.get_tracer(TRACER_NAME) if provider is not None else trace.get_tracer(TRACER_NAME)


@contextmanager
def span(state: Any, name: str, **attributes: str | float | bool) -> Iterator[trace.Span]:
    """A child span of the current request (attributes must be code-chosen values, never payload)."""
    with tracer(state).start_as_current_span(name, attributes=attributes) as current:
        yield current


def current_traceparent() -> dict[str, str]:
    """The ``traceparent`` (and ``tracestate``) headers of the current span, to call another service."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=context.get_current())
    return carrier
