"""Tracing (W3C traceparent in, one SERVER span per request) and JSON logs: no payload in either."""

from __future__ import annotations

import io
import json
import logging

from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mmapps.serve import tracing
from mmapps.serve.logs import JsonLogFormatter, configure_json_logs

SENTINEL = "PATIENT^SENTINEL 1234567"
TRACE_ID, PARENT_ID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


class _State:
    def __init__(self, provider: TracerProvider) -> None:
        self.extra = {"tracer_provider": provider}
        self.domain = type("D", (), {"name": "medical"})()


def traced_app() -> tuple[FastAPI, InMemorySpanExporter, _State]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app, state = FastAPI(), _State(provider)
    log = logging.getLogger("mmapps.serve.test")

    @app.post("/v1/items/{item_id}")
    async def item(item_id: str, request: Request) -> dict:
        body = await request.body()
        with tracing.span(state, "model", batch=1):
            log.info("scored one item", extra={"endpoint": "/v1/items/{item_id}", "note": body.decode()})
        return {"ok": True, "headers": tracing.current_traceparent()}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError(f"bad value {SENTINEL}")

    tracing.install(app, state)
    return app, exporter, state


def test_traceparent_is_continued_and_spans_hold_no_payload():
    app, exporter, _ = traced_app()
    stream = io.StringIO()
    handler = configure_json_logs("INFO", stream)
    try:
        with TestClient(app) as client:
            r = client.post(f"/v1/items/{SENTINEL}?note={SENTINEL}", content=SENTINEL.encode(),
                            headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01", "x-note": SENTINEL})
    finally:
        logging.getLogger("mmapps").handlers.remove(handler)
    assert r.status_code == 200
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"POST /v1/items/{item_id}", "model"}
    server, child = spans["POST /v1/items/{item_id}"], spans["model"]
    assert f"{server.context.trace_id:032x}" == TRACE_ID
    assert f"{server.parent.span_id:016x}" == PARENT_ID and server.parent.is_remote
    assert child.parent.span_id == server.context.span_id
    assert server.attributes["http.route"] == "/v1/items/{item_id}"
    assert server.attributes["http.response.status_code"] == 200
    # the outgoing header continues the same trace from inside the request
    assert r.json()["headers"]["traceparent"].startswith(f"00-{TRACE_ID}-")
    for s in spans.values():
        assert "SENTINEL" not in json.dumps({**dict(s.attributes), "name": s.name})
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["message"] == "scored one item" and line["endpoint"] == "/v1/items/{item_id}"
    assert line["trace_id"] == TRACE_ID and "note" not in line
    assert "SENTINEL" not in stream.getvalue()


def test_a_new_trace_without_traceparent_and_errors_marked():
    app, exporter, _ = traced_app()
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/boom").status_code == 500
        client.get("/nowhere")
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["GET /boom", "GET (unmatched)"]
    assert spans[0].parent is None and spans[0].status.status_code.name == "ERROR"
    assert "SENTINEL" not in str(spans[0].status.description) and "SENTINEL" not in str(spans[0].events)


def test_exceptions_are_logged_without_their_message():
    record = None
    try:
        raise ValueError(f"tag PatientName={SENTINEL}")
    except ValueError:
        import sys

        record = logging.LogRecord("mmapps", logging.ERROR, __file__, 1, "decode failed", None, sys.exc_info())
    line = json.loads(JsonLogFormatter().format(record))
    assert line["exception"] == "ValueError" and line["frames"][-1].endswith("test_exceptions_are_logged_without_their_message")
    assert "SENTINEL" not in json.dumps(line)


def test_unknown_exporter_is_refused():
    import pytest

    from mmapps.errors import ConfigError

    with pytest.raises(ConfigError, match="accepted: none, console, otlp"):
        tracing.build_provider("x", {"OTEL_TRACES_EXPORTER": "jaeger"})
    assert tracing.build_provider("x", {"OTEL_SERVICE_NAME": "svc"}).resource.attributes["service.name"] == "svc"
