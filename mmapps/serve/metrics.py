"""Prometheus metrics of one service replica: traffic, batching, model versions and drift.

One `ServiceMetrics` per process, on its own `CollectorRegistry` (so tests and several apps in one
process never collide); ``/metrics`` serves `ServiceMetrics.render`. Metric names (all ``mmapps_``):

============================================  =========  =======================================
name                                          type       labels
============================================  =========  =======================================
``requests_total``                            counter    endpoint, status
``request_duration_seconds``                  histogram  endpoint
``in_flight_requests``                        gauge      endpoint
``batch_size``                                histogram  model
``batch_queue_seconds``                       histogram  model
``model_load_seconds``                        gauge      model, version
``model_info``                                gauge      model, version (1 while loaded)
``ready``                                     gauge      (1 = ready for traffic)
``input_errors_total``                        counter    kind
``shed_requests_total``                       counter    model (503 overloaded: load shedding)
``score_psi`` / ``score_ks``                  gauge      model, version, score
``score_ks_pvalue``                           gauge      model, version, score
``input_drift_psi``                           gauge      model, version, feature
``input_missing_rate``                        gauge      model, version, modality
``drift_window_samples``                      gauge      model, version
============================================  =========  =======================================

Labels only ever hold names chosen by code (route templates, model and score names, error classes):
`_label` replaces anything else by ``"other"``, so no payload, identifier, note or chat text can
become a label value. Drift gauges are recomputed when ``/metrics`` is scraped, not per request.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from mmapps.serve.drift import DriftStat, DriftWindow

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
QUEUE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
_LABEL_OK = re.compile(r"^[A-Za-z0-9_.:/{}\-]{1,80}$")
PRESENT_PREFIX = "present."


def _label(value: object) -> str:
    text = str(value)
    return text if _LABEL_OK.match(text) else "other"


def reference_from_sidecar(sidecar: Mapping) -> dict[str, dict]:
    """The drift references of an export's ``model.json``: ``{"scores", "inputs", "labels"}``.

    Reads the export's ``score_distribution`` (`mmapps.export.scores.score_distribution`: per task,
    per label, a validation histogram ``{"edges", "counts"}`` and quantiles): score ``"<task>/<label>"``
    gets the histogram (or, without one, the quantiles), and ``labels`` keeps each task's label
    order, so that `ServiceMetrics.observe` can split a task's (N, L) scores by label. A
    ``"drift": {"scores": {...}, "inputs": {...}}`` block (forms of `mmapps.serve.drift`) is read
    as it is, and ``input_distribution`` (feature -> reference) gives the input references.
    """
    drift = sidecar.get("drift")
    if isinstance(drift, Mapping):
        return {"scores": dict(drift.get("scores") or {}), "inputs": dict(drift.get("inputs") or {}), "labels": {}}
    scores: dict[str, dict] = {}
    labels: dict[str, list[str]] = {}
    for task, block in (sidecar.get("score_distribution") or {}).items():
        if not isinstance(block, Mapping) or not isinstance(block.get("labels"), Mapping):
            continue
        labels[task] = list(block["labels"])
        for label, ref in block["labels"].items():
            spec = _score_spec(ref)
            if spec is not None:
                scores[f"{task}/{label}"] = spec
    inputs = sidecar.get("input_distribution")
    return {"scores": scores, "inputs": dict(inputs) if isinstance(inputs, Mapping) else {}, "labels": labels}


def _score_spec(ref: Mapping) -> dict | None:
    hist = ref.get("histogram") if isinstance(ref, Mapping) else None
    if isinstance(hist, Mapping) and sum(hist.get("counts") or []) > 0:
        return {"bin_edges": list(hist["edges"]), "counts": list(hist["counts"])}
    quantiles = ref.get("quantiles") if isinstance(ref, Mapping) else None
    if isinstance(quantiles, Mapping) and {"0.0", "1.0"} <= set(quantiles):
        probs = sorted(quantiles, key=float)
        return {"quantiles": [quantiles[p] for p in probs], "probs": [float(p) for p in probs]}
    return None


class _ModelDrift:
    def __init__(self, reference: Mapping[str, Mapping], window: int, min_samples: int) -> None:
        self.scores = DriftWindow(reference.get("scores") or {}, window, min_samples, "model.json drift.scores")
        self.inputs = DriftWindow(reference.get("inputs") or {}, window, min_samples, "model.json drift.inputs")
        self.labels: dict[str, list[str]] = dict(reference.get("labels") or {})  # task -> label order of its (N, L) scores
        self.presence: dict[str, list[bool]] = {}  # trimmed to the window on each observe
        self.samples = 0


class ServiceMetrics:
    """The metrics of one replica (see the module docstring for names and labels).

    Args:
        registry: where the metrics live; a fresh `CollectorRegistry` by default.
        drift_window: the sliding window (samples) of the drift statistics.
        drift_min_samples: below this many samples in the window no drift gauge is set.
    """

    def __init__(self, registry: CollectorRegistry | None = None, drift_window: int = 500,
                 drift_min_samples: int = 100) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self._requests = Counter("mmapps_requests", "Requests by endpoint and status", ["endpoint", "status"], registry=r)
        self._latency = Histogram("mmapps_request_duration_seconds", "Request latency", ["endpoint"],
                                  buckets=LATENCY_BUCKETS, registry=r)
        self._in_flight = Gauge("mmapps_in_flight_requests", "Requests being served", ["endpoint"], registry=r)
        self._batch = Histogram("mmapps_batch_size", "Samples per model batch", ["model"], buckets=BATCH_BUCKETS, registry=r)
        self._queue = Histogram("mmapps_batch_queue_seconds", "Time a sample waited for its batch", ["model"],
                                buckets=QUEUE_BUCKETS, registry=r)
        self._load = Gauge("mmapps_model_load_seconds", "Model load and warm-up time", ["model", "version"], registry=r)
        self._info = Gauge("mmapps_model_info", "1 for each loaded model version", ["model", "version"], registry=r)
        self._ready = Gauge("mmapps_ready", "1 while this replica is ready for traffic", registry=r)
        self._errors = Counter("mmapps_input_errors", "Refused inputs by error class", ["kind"], registry=r)
        self._shed = Counter("mmapps_shed_requests", "Requests refused with 503 because the model path was at capacity", ["model"], registry=r)
        self._psi = Gauge("mmapps_score_psi", "PSI of each output score vs validation", ["model", "version", "score"], registry=r)
        self._ks = Gauge("mmapps_score_ks", "KS statistic of each output score vs validation",
                         ["model", "version", "score"], registry=r)
        self._ks_p = Gauge("mmapps_score_ks_pvalue", "KS test p-value of each output score vs validation",
                           ["model", "version", "score"], registry=r)
        self._input_psi = Gauge("mmapps_input_drift_psi", "PSI of each input feature vs validation",
                                ["model", "version", "feature"], registry=r)
        self._missing = Gauge("mmapps_input_missing_rate", "Fraction of recent samples without the modality",
                              ["model", "version", "modality"], registry=r)
        self._window = Gauge("mmapps_drift_window_samples", "Samples in the drift window", ["model", "version"], registry=r)
        self._drift: dict[tuple[str, str], _ModelDrift] = {}
        self._drift_window, self._drift_min = drift_window, drift_min_samples
        self._lock = threading.Lock()
        self._ready.set(0)

    # -- traffic -------------------------------------------------------------------------------
    def request(self, endpoint: str, status: int, seconds: float) -> None:
        """Count one finished request; ``endpoint`` is the route template, never the raw path."""
        e = _label(endpoint)
        self._requests.labels(e, str(int(status))).inc()
        self._latency.labels(e).observe(max(float(seconds), 0.0))

    @contextmanager
    def in_flight(self, endpoint: str) -> Iterator[None]:
        """Hold the endpoint's in-flight gauge up for the duration of the block."""
        g = self._in_flight.labels(_label(endpoint))
        g.inc()
        try:
            yield
        finally:
            g.dec()

    def batch(self, model: str, size: int, queue_seconds: float | list[float]) -> None:
        """One model call on ``size`` samples; queue time per sample (or one figure for all)."""
        m = _label(model)
        self._batch.labels(m).observe(int(size))
        waits = queue_seconds if isinstance(queue_seconds, list | tuple) else [queue_seconds]
        for w in waits:
            self._queue.labels(m).observe(max(float(w), 0.0))

    def input_error(self, kind: str) -> None:
        """Count one refused input by its error class (e.g. ``"corrupt_dicom"``, ``"payload_too_large"``)."""
        self._errors.labels(_label(kind)).inc()

    def shed(self, model: str) -> None:
        """Count one request refused by load shedding (`mmapps.serve.admission`)."""
        self._shed.labels(_label(model)).inc()

    def ready(self, value: bool) -> None:
        """Readiness of this replica (the no-ready-replica alert reads it)."""
        self._ready.set(1 if value else 0)

    # -- models --------------------------------------------------------------------------------
    def model_loaded(self, model: str, version: str, seconds: float, reference: Mapping | None = None) -> None:
        """A version is loaded: its load time, its info gauge, and its drift references.

        Args:
            reference: ``{"scores": {...}, "inputs": {...}, "labels": {...}}`` as returned by
                `reference_from_sidecar`; without one (a training checkpoint) only the
                missing-modality rates are tracked.
        """
        m, v = _label(model), _label(version)
        self._load.labels(m, v).set(float(seconds))
        self._info.labels(m, v).set(1)
        with self._lock:
            self._drift[(m, v)] = _ModelDrift(reference or {}, self._drift_window, self._drift_min)

    def model_unloaded(self, model: str, version: str) -> None:
        """A version is gone: its info gauge falls to 0 and its drift window is dropped."""
        m, v = _label(model), _label(version)
        self._info.labels(m, v).set(0)
        with self._lock:
            self._drift.pop((m, v), None)

    def observe(self, model: str, version: str, scores: Mapping[str, np.ndarray], inputs: Mapping) -> None:
        """Feed one request's output scores and input summary into the version's drift windows.

        Args:
            scores: score name -> the values this request produced: a task name with (N, L) scores
                is split by its reference's label order into ``"<task>/<label>"``; anything else
                is flattened under its own name.
            inputs: feature name -> value or list of values, from code-defined summaries only:
                ``"present.<modality>"`` -> bool (missing-modality rate), categorical features
                (``"view"``, ``"manufacturer"``) -> str, numeric ones (``"image_mean"``) -> float.
                Features without a reference are ignored, except presence, whose rate is always kept.
        """
        key = (_label(model), _label(version))
        with self._lock:
            drift = self._drift.get(key)
            if drift is None:
                return
            for name, values in scores.items():
                array, labels = np.asarray(values, dtype=np.float64), drift.labels.get(name)
                if labels and array.ndim == 2 and array.shape[1] == len(labels):
                    for j, label in enumerate(labels):
                        drift.scores.add(f"{name}/{label}", array[:, j])
                else:
                    drift.scores.add(name, array.ravel())
            for name, value in inputs.items():
                values = value if isinstance(value, list | tuple | np.ndarray) else [value]
                if name.startswith(PRESENT_PREFIX):
                    window = drift.presence.setdefault(name[len(PRESENT_PREFIX):], [])
                    window.extend(bool(x) for x in values)
                    del window[: max(len(window) - self._drift_window, 0)]
                    drift.inputs.add(name, [str(bool(x)) for x in values])
                else:
                    drift.inputs.add(name, values)
            drift.samples += 1

    def drift(self, model: str, version: str) -> dict[str, dict[str, DriftStat]]:
        """The current drift statistics of one version: ``{"scores": {...}, "inputs": {...}}``."""
        with self._lock:
            d = self._drift.get((_label(model), _label(version)))
            if d is None:
                return {"scores": {}, "inputs": {}}
            return {"scores": d.scores.stats(), "inputs": d.inputs.stats()}

    def _refresh_drift(self) -> None:
        with self._lock:
            items = list(self._drift.items())
            for (m, v), d in items:
                for name, st in d.scores.stats().items():
                    s = _label(name)
                    self._psi.labels(m, v, s).set(st.psi)
                    self._ks.labels(m, v, s).set(st.ks)
                    self._ks_p.labels(m, v, s).set(st.ks_pvalue)
                for name, st in d.inputs.stats().items():
                    self._input_psi.labels(m, v, _label(name)).set(st.psi)
                for modality, window in d.presence.items():
                    if window:
                        self._missing.labels(m, v, _label(modality)).set(1.0 - sum(window) / len(window))
                self._window.labels(m, v).set(min(d.samples, self._drift_window))

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type (drift gauges refreshed first)."""
        self._refresh_drift()
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
