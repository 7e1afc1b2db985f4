"""Structured JSON logs for the service: one object per line, no payload.

`JsonLogFormatter` writes ``time, level, logger, message`` plus the active trace and span ids and
only the extra fields in `EXTRA_FIELDS` (request id, key id, endpoint, status...), so a stray
``extra={"note": ...}`` never reaches the log. An exception is logged as its class and its
traceback's frames (file, line, function) without the exception's message, which may quote the
input (a DICOM tag value, a chat line). Uvicorn's access log is turned off by `uvicorn_log_config`:
it prints the raw path and query string; the audit log records requests instead.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from typing import Any, TextIO

EXTRA_FIELDS = ("request_id", "key_id", "endpoint", "status", "latency_ms", "model", "version", "event", "replicas", "engine")


class JsonLogFormatter(logging.Formatter):
    """A log record as one JSON object (see the module docstring for the fields)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        trace_id, span_id = _current_ids()
        if trace_id:
            out["trace_id"], out["span_id"] = trace_id, span_id
        for name in EXTRA_FIELDS:
            if name in record.__dict__:
                out[name] = record.__dict__[name]
        if record.exc_info and record.exc_info[0] is not None:
            exc_type, _, tb = record.exc_info
            out["exception"] = exc_type.__name__
            out["frames"] = [f"{f.filename}:{f.lineno}:{f.name}" for f in traceback.extract_tb(tb)][-8:]
        return json.dumps(out, default=str)


def _current_ids() -> tuple[str | None, str | None]:
    try:
        from opentelemetry import trace
    except ImportError:
        return None, None
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None, None
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"


LOGGERS = ("mmapps", "uvicorn", "uvicorn.error", "ray.serve")


def configure_json_logs(level: str = "INFO", stream: TextIO | None = None) -> logging.Handler:
    """Send the service's loggers (`LOGGERS`) to ``stream`` (stderr) as JSON lines; returns the handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonLogFormatter())
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
    logging.getLogger("uvicorn.access").disabled = True
    return handler


def uvicorn_log_config(level: str = "INFO") -> dict[str, Any]:
    """A ``log_config`` for ``uvicorn.run``: JSON lines on stderr, the access log off."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "mmapps.serve.logs.JsonLogFormatter"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
            "mmapps": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
        },
    }
