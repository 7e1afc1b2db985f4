"""What a running service holds: settings, keys, audit log, metrics, model versions, decoder pool, readiness.

`ServiceState` is built once per process (by `mmapps.serve.server` or a test) and handed to
`mmapps.serve.app.create_app`; routers and middleware read it, nothing else is global.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mmapps.serve.admission import AdmissionControl, default_limits
from mmapps.serve.audit import AuditLog
from mmapps.serve.auth import KeyStore
from mmapps.serve.limits import RateLimiter


@dataclass
class ServiceSettings:
    """Limits and switches of one service process.

    Args:
        max_body_bytes: largest request body (413 above it; multipart uploads included).
        max_json_bytes: largest JSON body of ``/v2/.../infer``.
        request_timeout_s: a request still running after this answers 504 (the work is abandoned).
        rate_per_key: sustained requests per second per key (<= 0: unlimited); ``rate_burst`` at once.
        max_batch_size, max_batch_delay_ms: the micro-batcher (1 / 0: no batching).
        max_in_flight, max_queued, max_queue_wait_s: bounded admission to the model path
            (`mmapps.serve.admission`; None: sized from the batch size and decoder count); over them 503 + Retry-After.
        decode_workers, decode_timeout_s, decode_memory_mb: the decoder subprocess pool.
        max_pixels, max_frames, max_points, max_files: caps checked in the decoder before decoding.
        store_inputs: folder where de-identified inputs are stored (debugging), or None.
        gradcam: allow ``gradcam=true`` on the medical endpoint.
        docs: serve ``/docs`` and ``/openapi.json`` (admin scope).
    """

    max_body_bytes: int = 64 * 2**20
    max_json_bytes: int = 8 * 2**20
    request_timeout_s: float = 60.0
    rate_per_key: float = 50.0
    rate_burst: int = 100
    max_batch_size: int = 8
    max_batch_delay_ms: float = 5.0
    max_in_flight: int | None = None
    max_queued: int | None = None
    max_queue_wait_s: float = 30.0
    decode_workers: int = 2
    decode_timeout_s: float = 30.0
    decode_memory_mb: int = 4096
    max_pixels: int = 40_000_000
    max_frames: int = 3000
    max_points: int = 500_000
    max_files: int = 16
    store_inputs: Path | None = None
    gradcam: bool = True
    docs: bool = True


class MetricsSink(Protocol):
    """What the service reports to monitoring (`mmapps.serve.metrics.ServiceMetrics` implements it)."""

    def request(self, endpoint: str, status: int, seconds: float) -> None: ...
    def in_flight(self, endpoint: str) -> contextlib.AbstractContextManager: ...
    def batch(self, model: str, size: int, queue_seconds: float) -> None: ...
    def model_loaded(self, model: str, version: str, seconds: float, reference: Any = None) -> None: ...
    def input_error(self, kind: str) -> None: ...
    def shed(self, model: str) -> None: ...
    def observe(self, model: str, version: str, scores: dict[str, np.ndarray], inputs: dict) -> None: ...
    def render(self) -> tuple[bytes, str]: ...


class NullMetrics:
    """A `MetricsSink` that counts nothing (used when monitoring is not installed)."""

    def __init__(self) -> None:
        self.input_errors: dict[str, int] = {}

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        pass

    @contextlib.contextmanager
    def in_flight(self, endpoint: str) -> Iterator[None]:
        yield

    def batch(self, model: str, size: int, queue_seconds: float) -> None:
        pass

    def model_loaded(self, model: str, version: str, seconds: float, reference: Any = None) -> None:
        pass

    def input_error(self, kind: str) -> None:
        self.input_errors[kind] = self.input_errors.get(kind, 0) + 1

    def shed(self, model: str) -> None:
        pass

    def observe(self, model: str, version: str, scores: dict[str, np.ndarray], inputs: dict) -> None:
        pass

    def render(self) -> tuple[bytes, str]:
        return b"", "text/plain; version=0.0.4"


def default_metrics() -> MetricsSink:
    """S2's `ServiceMetrics` when the monitoring module is present, else `NullMetrics`."""
    try:
        from mmapps.serve.metrics import ServiceMetrics
    except ImportError:
        return NullMetrics()
    return ServiceMetrics()


@dataclass
class ServiceState:
    """One service process.

    Attributes:
        domain: the served domain (`mmapps.domain.Domain`).
        versions: `mmapps.serve.versions.ModelVersions`, the loaded model versions.
        settings: `ServiceSettings`.
        keys: `KeyStore`; every endpoint but ``/v2/health/*`` and ``/v2`` needs a key.
        audit: `AuditLog`.
        metrics: a `MetricsSink`.
        decoders: `mmapps.serve.decoders.DecoderPool` (raw DICOM / MP4 / point clouds), or None.
        limiter: per-key `RateLimiter`.
        admission: the model path's `mmapps.serve.admission.AdmissionControl` (load shedding).
        draining: set on SIGTERM; readiness answers 503 from then on.
        warmed: True once a warm-up inference of the active version has run.
        extra: room for monitoring / engine state (S2's drift windows, tracer...).
    """

    domain: Any
    versions: Any
    settings: ServiceSettings = field(default_factory=ServiceSettings)
    keys: KeyStore | None = None
    audit: AuditLog = field(default_factory=lambda: AuditLog(None))
    metrics: MetricsSink = field(default_factory=default_metrics)
    decoders: Any = None
    limiter: RateLimiter | None = None
    admission: AdmissionControl | None = None
    draining: bool = False
    warmed: bool = False
    in_flight: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.limiter is None:
            self.limiter = RateLimiter(self.settings.rate_per_key, self.settings.rate_burst)
        if self.admission is None:
            s = self.settings
            limits = default_limits(s.max_batch_size, s.decode_workers, s.max_in_flight, s.max_queued, s.max_queue_wait_s)
            self.admission = AdmissionControl(self.domain.name, limits, self.metrics)
        self._idle: asyncio.Event | None = None

    @property
    def ready(self) -> bool:
        """Model loaded, warm-up inference done, not draining."""
        return bool(self.versions is not None and self.versions.active is not None and self.warmed and not self.draining)

    async def drain(self, timeout_s: float) -> bool:
        """Readiness off, then wait until no request is in flight (True) or ``timeout_s`` passes (False)."""
        self.draining = True
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while self.in_flight > 0 and loop.time() < end:
            await asyncio.sleep(0.02)
        return self.in_flight == 0
