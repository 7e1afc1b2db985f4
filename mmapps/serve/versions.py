"""Model versions side by side: load, switch, roll back, shadow.

A request picks its version once, at its start (``get(None)`` is the active one), and keeps it
to its end, so a switch never fails or mixes a request: requests in flight finish on the old
version, the next ones use the new. Loading happens in a thread beside the serving versions and a
version becomes available only after its warm-up inference. Rollback re-activates the version
active before the last switch. A shadow version is scored on the same samples after the answer
is computed; its scores go to the metrics only (``observe``), never to the caller.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmapps.serve.batcher import MicroBatcher
from mmapps.serve.errors import ServeError
from mmapps.serve.runner import ModelRunner, load_runner


def drift_reference(runner: ModelRunner) -> dict[str, Any] | None:
    """The validation distributions a version's drift is measured against.

    An export folder: its ``model.json`` (``score_distribution`` and ``input_distribution``). A
    training checkpoint: the input distribution of its run's validation split
    (`mmapps.serve.input_profile.checkpoint_input_distribution`); no score reference (export the
    model for prediction drift).
    """
    try:
        from mmapps.serve.metrics import reference_from_sidecar
    except ImportError:
        return None
    if not runner.source.is_dir():
        from mmapps.serve.input_profile import checkpoint_input_distribution

        inputs = checkpoint_input_distribution(runner.source, runner.cfg, runner.domain)
        return {"scores": {}, "inputs": inputs, "labels": {}} if inputs else None
    sidecar = runner.source / "model.json"
    if not sidecar.is_file():
        return None
    import json

    try:
        return reference_from_sidecar(json.loads(sidecar.read_text()))
    except ValueError:
        return None


@dataclass
class LoadedVersion:
    """A version ready to serve: its runner, its batcher, when and how fast it loaded, its model card."""

    runner: ModelRunner
    batcher: MicroBatcher
    raw_batcher: MicroBatcher
    loaded_at: float = field(default_factory=time.time)
    load_seconds: float = 0.0
    card: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.runner.version

    def describe(self, active: str | None, shadow: str | None) -> dict[str, Any]:
        return {"version": self.name, "sha256": self.runner.sha256, "source": self.runner.source.name,
                "active": self.name == active, "shadow": self.name == shadow, "loaded_at": round(self.loaded_at, 3),
                "load_seconds": round(self.load_seconds, 3), "thresholds": bool(self.runner.thresholds)}


class ModelVersions:
    """The versions of the served model (all of one domain).

    Args:
        model_name: the model's name in URLs and metrics (the domain name).
        settings: `mmapps.serve.state.ServiceSettings` (batcher sizes).
        metrics: a `mmapps.serve.state.MetricsSink`.
        warm: ``runner -> None``, the warm-up inference run before a version is offered.
    """

    batcher_factory: Any = MicroBatcher  # MicroBatcher's signature; Ray replicas use @serve.batch (mmapps.serve.ray_replica)

    def __init__(self, model_name: str, settings: Any, metrics: Any, warm: Any = None) -> None:
        self.model_name, self.settings, self.metrics, self.warm = model_name, settings, metrics, warm
        self.versions: dict[str, LoadedVersion] = {}
        self.active: str | None = None
        self.shadow: str | None = None
        self.history: list[str] = []
        self._lock = threading.Lock()

    def add(self, runner: ModelRunner, load_seconds: float = 0.0, activate: bool = False) -> LoadedVersion:
        """Offer a loaded (and warmed) runner; the first one becomes active."""
        from mmapps.serve.modelcard import model_card

        batcher = self.batcher_factory(runner.predict, self.model_name, runner.version, self.settings.max_batch_size, self.settings.max_batch_delay_ms, self.metrics)
        raw = self.batcher_factory(lambda samples: runner.predict(samples, postprocess=False), self.model_name, runner.version,
                           self.settings.max_batch_size, self.settings.max_batch_delay_ms, self.metrics)
        loaded = LoadedVersion(runner, batcher, raw, load_seconds=load_seconds, card=model_card(runner))
        with self._lock:
            if runner.version in self.versions:
                raise ServeError(409, "version_exists", f"version {runner.version!r} is already loaded; give another --version name or unload it first")
            self.versions[runner.version] = loaded
            if activate or self.active is None:
                self._switch(runner.version)
        reference = drift_reference(runner)
        if reference is not None:
            self.metrics.model_loaded(self.model_name, runner.version, load_seconds, reference)
        else:
            self.metrics.model_loaded(self.model_name, runner.version, load_seconds)
        return loaded

    def load(self, source: Path, domain: Any, version: str | None = None, activate: bool = False) -> LoadedVersion:
        """Load ``source`` (checkpoint or export folder), warm it up, offer it (blocking: call in a thread)."""
        start = time.perf_counter()
        runner = load_runner(source, domain, version)
        if runner.version in self.versions:
            raise ServeError(409, "version_exists", f"version {runner.version!r} is already loaded; give another version name")
        if self.warm is not None:
            self.warm(runner)
        return self.add(runner, time.perf_counter() - start, activate)

    async def load_async(self, source: Path, domain: Any, version: str | None = None, activate: bool = False) -> LoadedVersion:
        return await asyncio.to_thread(self.load, source, domain, version, activate)

    def get(self, version: str | None = None) -> LoadedVersion:
        """The named version, or the active one (404 / 503 when there is none)."""
        with self._lock:
            name = version or self.active
            if name is None:
                raise ServeError(503, "not_ready", "no model version is active yet; retry when /v2/health/ready answers 200", {"Retry-After": "1"})
            found = self.versions.get(name)
        if found is None:
            raise ServeError(404, "unknown_version", f"model version {name!r} is not loaded; loaded: {sorted(self.versions)}")
        return found

    def _switch(self, name: str) -> None:
        if self.active is not None and self.active != name:
            self.history.append(self.active)
        self.active = name

    def activate(self, name: str) -> None:
        self.get(name)
        with self._lock:
            self._switch(name)
            if self.shadow == name:
                self.shadow = None

    def rollback(self) -> str:
        """Re-activate the version active before the last switch; returns its name."""
        with self._lock:
            while self.history and self.history[-1] not in self.versions:
                self.history.pop()
            if not self.history:
                raise ServeError(409, "no_rollback", f"no earlier version to roll back to (active: {self.active!r}, loaded: {sorted(self.versions)})")
            self.active = self.history.pop()
            return self.active

    def set_shadow(self, name: str | None) -> None:
        if name is not None:
            self.get(name)
            if name == self.active:
                raise ServeError(409, "shadow_is_active", f"version {name!r} is the active one; a shadow must be another version")
        self.shadow = name

    def unload(self, name: str) -> None:
        with self._lock:
            if name == self.active:
                raise ServeError(409, "unload_active", f"version {name!r} is active; activate another version first")
            if self.versions.pop(name, None) is None:
                raise ServeError(404, "unknown_version", f"model version {name!r} is not loaded; loaded: {sorted(self.versions)}")
            if self.shadow == name:
                self.shadow = None
        if hasattr(self.metrics, "model_unloaded"):
            self.metrics.model_unloaded(self.model_name, name)

    def describe(self) -> list[dict[str, Any]]:
        return [v.describe(self.active, self.shadow) for v in self.versions.values()]
