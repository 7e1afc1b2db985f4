"""What runs inside a Ray Serve replica: the deployment class, its app builder and ``@serve.batch`` batching.

`ServiceIngress` is a ``serve.ingress()`` deployment class in Ray's late-bound form: Ray pickles
the `ReplicaApp` it is bound with, and each replica calls ``__serve_build_asgi_app__`` once at
start-up, which loads the keys and the model, warms it up (`mmapps.serve.service.build_state`)
and returns `mmapps.serve.app.create_app`'s app; Ray then runs the app's lifespan and routes HTTP
requests to it, so the routes, auth, limits, metrics and audit are those of the one-process
server. Readiness is the replica's state (``state.ready``): Ray's health check asks it too, so a
replica whose model is not loaded is replaced, and one that stops turns readiness off first.

(The earlier form, ``serve.ingress(builder)()`` with a callable dataclass, was taken by Ray for an
ASGI app, not a builder: Ray calls a builder only when it is a plain function, so every request
reached ``ReplicaApp.__call__(scope, receive, send)`` and answered 500.)

Batching under Ray is Ray Serve's ``@serve.batch`` (`ServeBatcher`), with `MicroBatcher`'s
interface, so the domain routes and the v2 routes use it unchanged.

This module imports Ray: import it only where Ray is installed (`mmapps.serve.ray_engine` does so
when it deploys).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray import serve

from mmapps.serve.state import ServiceState


@dataclass
class ReplicaApp:
    """The picklable recipe of one replica's service: domain, model, settings, keys and audit log.

    Keys are read on the replica from ``keys_file`` and ``$MMAPPS_API_KEYS`` (inherited from the
    command on a local instance; on a cluster, the file must exist on every node, as the pepper
    and de-identification key files under the user config folder must).
    """

    domain_name: str
    checkpoint: str
    settings: Any
    keys_file: str | None = None
    audit_log: str | None = None
    version: str | None = None
    loopback: bool = False  # a local instance: the replica's own gRPC server binds 127.0.0.1 too

    def build_state(self) -> ServiceState:
        """Keys loaded, decoder children started, the model loaded and warmed up, batching by ``@serve.batch``."""
        from mmapps.plugins import get_domain
        from mmapps.serve.service import build_state

        state = build_state(get_domain(self.domain_name), Path(self.checkpoint), self.settings,
                            keys_file=Path(self.keys_file) if self.keys_file else None,
                            audit_path=Path(self.audit_log) if self.audit_log else None, version=self.version)
        state.extra["engine"] = "ray"
        use_serve_batch(state)
        if hasattr(state.metrics, "ready"):
            state.metrics.ready(state.ready)
        return state


@dataclass
class _Item:
    samples: Sequence[Any]
    queued_at: float = field(default_factory=time.perf_counter)


class ServeBatcher:
    """`mmapps.serve.batcher.MicroBatcher`'s interface on Ray Serve's ``@serve.batch``.

    Each submitted request (a list of samples) is one item of Ray's batch queue, weighed by its
    sample count (``batch_size_fn``), so a batch holds at most ``max_batch_size`` samples; the
    first item waits at most ``max_delay_ms`` for company. The model call runs in a worker thread
    (the replica's event loop keeps answering), each request gets its own outputs back in order,
    and batch size and queue time go to the metrics as with the asyncio batcher. One queue per
    instance (``serve.batch`` keeps one per decorated function), so versions never share a batch.
    """

    def __init__(self, predict: Callable[[Sequence[Any]], list], name: str, version: str, max_batch_size: int,
                 max_delay_ms: float, metrics: Any) -> None:
        self.predict, self.name, self.version, self.metrics = predict, name, version, metrics
        self.max_batch_size = max(1, max_batch_size)
        self.batches: list[int] = []  # sizes of the last batches (tests, benchmarks)
        self._batched = serve.batch(max_batch_size=self.max_batch_size, batch_wait_timeout_s=max(0.0, max_delay_ms) / 1000,
                                    batch_size_fn=lambda items: sum(len(item.samples) for item in items))(self._run)

    async def submit(self, samples: Sequence[Any]) -> list:
        """Queue ``samples`` and wait for their predictions (in order)."""
        samples = list(samples)
        if len(samples) > self.max_batch_size:  # Ray refuses an item larger than a batch: it runs alone
            return (await self._run([_Item(samples)]))[0]
        return await self._batched(_Item(samples))

    async def _run(self, items: list[_Item]) -> list[list]:
        started = time.perf_counter()
        size = sum(len(item.samples) for item in items)
        for item in items:
            self.metrics.batch(self.name, size, started - item.queued_at)
        self.batches = [*self.batches[-999:], size]
        outputs = await asyncio.to_thread(self.predict, [s for item in items for s in item.samples])
        results, start = [], 0
        for item in items:
            results.append(outputs[start : start + len(item.samples)])
            start += len(item.samples)
        return results

    async def close(self) -> None:
        """Nothing to stop: Ray's batch task ends with the replica."""


def use_serve_batch(state: ServiceState) -> None:
    """Batch every loaded version (and those loaded later) with `ServeBatcher` instead of the asyncio batcher."""
    versions = state.versions
    versions.batcher_factory = ServeBatcher
    for loaded in versions.versions.values():
        loaded.batcher = _rebatch(loaded.batcher)
        loaded.raw_batcher = _rebatch(loaded.raw_batcher)


def _rebatch(batcher: Any) -> ServeBatcher:
    return ServeBatcher(batcher.predict, batcher.name, batcher.version, batcher.max_batch_size, batcher.max_delay * 1000, batcher.metrics)


def bind_replica_grpc_to_loopback() -> None:
    """Make this replica's inter-deployment gRPC server listen on 127.0.0.1 instead of every interface.

    Ray Serve 2.60 binds it to ``[::]:0`` whatever the node IP (the GCS, raylet, agents and
    workers follow the node IP, loopback on a local instance). The server checks Ray's token, but
    a local instance should expose nothing, so the all-interfaces address is swapped for loopback
    before the replica starts the server (it does so after this class's constructor).
    """
    from ray.serve._private import replica

    original = replica.add_port_to_grpc_server
    if getattr(original, "mmapps_loopback", False):
        return

    def add_port(server: Any, address: str) -> int:
        host, _, port = address.rpartition(":")
        return original(server, f"127.0.0.1:{port}" if host in ("[::]", "0.0.0.0", "") else address)

    add_port.mmapps_loopback = True  # type: ignore[attr-defined]
    replica.add_port_to_grpc_server = add_port


@serve.ingress()
class ServiceIngress:
    """The Ray Serve deployment: one `ReplicaApp`'s service per replica (see the module docstring)."""

    def __init__(self, builder: ReplicaApp) -> None:
        self.builder = builder
        self.state: ServiceState | None = None
        if builder.loopback:
            bind_replica_grpc_to_loopback()

    async def __serve_build_asgi_app__(self) -> Any:
        from mmapps.serve.app import create_app

        self.state = await asyncio.to_thread(self.builder.build_state)  # seconds of loading off the replica's loop
        return create_app(self.state)

    def check_health(self) -> None:
        """Ray's periodic health check: a replica without a ready model is unhealthy (Ray replaces it)."""
        if self.state is None or (not self.state.ready and not self.state.draining):
            raise RuntimeError("the model is not loaded and warmed up")

    async def __del__(self) -> None:
        if self.state is None:
            return
        from mmapps.serve.service import close_state

        self.state.draining = True  # Ray stopped routing here and waited for the requests in flight
        await asyncio.to_thread(close_state, self.state)


def app_builder(args: dict[str, str]) -> Any:
    """A Ray Serve application builder, for ``serve run`` / ``serve deploy`` and KubeRay's ``RayService``.

    ``import_path: mmapps.serve.ray_replica:app_builder`` with ``args``: ``domain`` and ``checkpoint``
    (required; a path on every node), ``keys_file``, ``audit_log``, ``version`` (optional). The
    replica count, autoscaling and ``ray_actor_options`` come from the config's ``deployments``
    section (deployment name ``mmapps-service``); the service settings are the defaults of
    ``mmapps <domain> serve``.

    Raises:
        ConfigError: ``domain`` or ``checkpoint`` missing.
    """
    from mmapps.errors import ConfigError
    from mmapps.serve.state import ServiceSettings

    missing = [k for k in ("domain", "checkpoint") if not args.get(k)]
    if missing:
        raise ConfigError(f"Ray Serve application args: {', '.join(missing)} missing; give domain (e.g. medical) and checkpoint "
                          "(RUN/checkpoints/best.safetensors or an export folder, on every node); optional: keys_file, audit_log, version")
    builder = ReplicaApp(args["domain"], args["checkpoint"], ServiceSettings(), args.get("keys_file") or None,
                         args.get("audit_log") or None, args.get("version") or None)
    return serve.deployment(ServiceIngress, name="mmapps-service").bind(builder)
