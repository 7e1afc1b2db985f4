"""``serve --engine ray``: the same FastAPI app on Ray Serve replicas, with Ray's autoscaler.

Each replica is a `mmapps.serve.ray_replica.ServiceIngress` built from a picklable
`mmapps.serve.ray_replica.ReplicaApp` (domain, model, settings, keys): it loads the model, warms
it up and serves `mmapps.serve.app.create_app`'s app, so the routes, auth, limits, metrics and
tracing are those of the one-process server, with ``@serve.batch`` batching. Ray Serve's
autoscaler keeps ``min_replicas..max_replicas`` replicas at about ``target_ongoing_requests``
requests each; each replica reserves ``num_cpus`` / ``num_gpus``.

Where Ray runs:

- no ``address``: a local Ray instance started here, on loopback only (``127.0.0.1``), with the
  dashboard (and its Jobs API) off and token authentication on (``RAY_AUTH_MODE=token``: Ray's
  Jobs API has had unauthenticated remote-code-execution CVEs) with a fresh random token held in
  the environment of the processes it starts (unless ``RAY_AUTH_TOKEN`` / ``RAY_AUTH_TOKEN_PATH``
  name one); it stops with the command;
- ``address="ray://..."`` or ``"HOST:6379"``: an existing cluster (multi-node, or KubeRay's
  RayService); its token comes from ``RAY_AUTH_TOKEN`` / ``RAY_AUTH_TOKEN_PATH`` as Ray reads it.

`replica_counts` and `log_replicas` read the running replica count (``serve.status()``), which
is how the autoscaling trace in ``benchmarks/results/serve_ray_autoscale.*`` is recorded.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mmapps.errors import ConfigError, MmappsError

log = logging.getLogger("mmapps.serve.ray")
APP_NAME = "mmapps"
DEPLOYMENT = "mmapps-service"
LOOPBACK = "127.0.0.1"


@dataclass
class RayOptions:
    """Ray Serve deployment settings (``mmapps <domain> serve --engine ray ...``).

    Args:
        address: an existing Ray cluster, or None for a local instance on loopback.
        host, port: where Ray Serve's HTTP proxy listens (loopback unless TLS and keys say otherwise).
        min_replicas, max_replicas: the autoscaler's bounds (equal: a fixed replica count).
        target_ongoing_requests: requests per replica the autoscaler aims at.
        max_ongoing_requests: requests a replica takes at once (more wait in the proxy).
        num_cpus, num_gpus: reserved per replica.
        upscale_delay_s, downscale_delay_s: how long a scale decision must hold (Ray's defaults 30 / 600 s).
        metrics_interval_s, look_back_period_s: how often replicas report load, and over what window.
        local_cpus: CPUs the local instance offers (None: every core).
    """

    address: str | None = None
    host: str = LOOPBACK
    port: int = 8000
    min_replicas: int = 1
    max_replicas: int = 1
    target_ongoing_requests: float = 2.0
    max_ongoing_requests: int = 8
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 600.0
    metrics_interval_s: float = 10.0
    look_back_period_s: float = 30.0
    local_cpus: int | None = None

    def check(self) -> None:
        """Refuse settings Ray would reject later, with the option named."""
        if not 0 <= self.min_replicas <= self.max_replicas or self.max_replicas < 1:
            raise ConfigError(f"--min-replicas {self.min_replicas} / --max-replicas {self.max_replicas}: "
                              "need 0 <= min <= max and max >= 1")
        if self.target_ongoing_requests <= 0 or self.max_ongoing_requests < 1:
            raise ConfigError(f"--target-ongoing-requests {self.target_ongoing_requests}: must be > 0 "
                              f"(and max ongoing requests {self.max_ongoing_requests} >= 1)")
        if self.num_cpus < 0 or self.num_gpus < 0:
            raise ConfigError(f"--num-cpus {self.num_cpus} / --num-gpus {self.num_gpus}: must be >= 0")

    def autoscaling_config(self) -> dict[str, Any]:
        return {
            "min_replicas": self.min_replicas, "max_replicas": self.max_replicas, "initial_replicas": max(self.min_replicas, 1),
            "target_ongoing_requests": self.target_ongoing_requests,
            "upscale_delay_s": self.upscale_delay_s, "downscale_delay_s": self.downscale_delay_s,
            "metrics_interval_s": self.metrics_interval_s, "look_back_period_s": self.look_back_period_s,
        }


class RayStartError(MmappsError):
    """Ray or Ray Serve did not start (or the cluster at ``--address`` could not be joined)."""


# Ray's start-up waits, raised for a loaded machine (Ray's own settings: env vars read by every process it starts).
RAY_START_ENV = {
    "RAY_gcs_server_port_wait_time_s": "120",  # the GCS writes its port (default 30 s)
    "RAY_worker_register_timeout_seconds": "120",  # a worker (a replica, the Serve controller) registers (default 60 s)
    "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "60",  # the controller kills a proxy not ready in time (default 5 s)
    "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S": "60",  # ... or not answering its health check (default 10 s)
}
START_ATTEMPTS = 3  # the raylet waits a fixed ~15 s for each agent port and Ray 30 s for the raylet (no settings): a start past them is tried again


def start_ray(options: RayOptions) -> None:
    """Connect to ``options.address`` or start a local instance: loopback, no dashboard, token auth on.

    Raises:
        ConfigError: Ray is not installed.
        RayStartError: Ray did not start, or the cluster could not be joined.
    """
    if options.address is None:  # before Ray is imported: its token loader reads the environment once
        os.environ["RAY_AUTH_MODE"] = "token"  # read by the GCS, raylet and workers this call starts
        if not os.environ.get("RAY_AUTH_TOKEN") and not os.environ.get("RAY_AUTH_TOKEN_PATH"):
            os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)  # inherited by the local processes only
    for key, value in RAY_START_ENV.items():
        os.environ.setdefault(key, value)
    try:
        import ray
    except ImportError:
        raise ConfigError("--engine ray needs Ray Serve: pip install 'mmapps[ray]' (ray[serve])") from None
    if ray.is_initialized():
        return
    _reload_auth_settings()
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if options.address is None:
        kwargs.update(_node_ip_address=LOOPBACK, num_cpus=options.local_cpus)
    else:
        kwargs["address"] = options.address
    where = options.address or f"a local instance on {LOOPBACK}"
    for attempt in range(1, START_ATTEMPTS + 1):
        before = _child_pids()
        try:
            with _loopback_node(options.address is None):
                ray.init(**kwargs)
            return
        except Exception as err:  # noqa: BLE001 - Ray raises a bare Exception (node start-up), RuntimeError, ConnectionError
            ray.shutdown()
            _stop_children(_child_pids() - before)  # a failed ray.init leaves its GCS, raylet and agents running (only those)
            timed_out = "timed out during startup" in str(err)
            if not (timed_out and options.address is None and attempt < START_ATTEMPTS):
                raise RayStartError(f"Ray did not start ({where}): {type(err).__name__}: {str(err)[:300]}; Ray's own logs are under "
                                    "/tmp/ray/session_latest/logs (raylet.err, gcs_server.err); with --address, check the address "
                                    "and that RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH hold the cluster's token") from None
            log.warning("the local Ray node did not register within Ray's 30 s; starting it again (machine loaded?)")


@contextlib.contextmanager
def _loopback_node(local: bool) -> Iterator[None]:
    """Keep a local node's IP at 127.0.0.1, so that every Ray server (GCS, raylet, agents, workers) binds loopback.

    ``ray.init(_node_ip_address="127.0.0.1")`` alone is not enough: Ray swaps a loopback address
    for the machine's routable one (``services.resolve_ip_for_localhost``), and its servers then
    listen on every interface. Ray binds them to the node IP when that IP is loopback, so the swap
    is skipped while this local instance starts (tested: no Ray socket outside 127.0.0.1).
    """
    if not local:
        yield
        return
    from ray._private import services

    resolve = services.resolve_ip_for_localhost
    services.resolve_ip_for_localhost = lambda host: host
    try:
        yield
    finally:
        services.resolve_ip_for_localhost = resolve


def _child_pids() -> set[int]:
    """Child processes of this command that are Ray's (its binaries and scripts, its ``ray::`` workers)."""
    try:
        import psutil  # installed with ray[serve] (its dashboard agent needs it)
    except ImportError:
        return set()
    import ray

    ray_dir = os.path.dirname(ray.__file__)
    found = set()
    for process in psutil.Process().children(recursive=True):
        try:
            if process.name().startswith("ray::") or any(arg.startswith(ray_dir) for arg in process.cmdline()):
                found.add(process.pid)
        except psutil.Error:
            continue
    return found


def _stop_children(pids: set[int], grace_s: float = 5.0) -> None:
    """Terminate, then kill, the given child processes of this command (those a failed Ray start left behind)."""
    import psutil

    processes = []
    for pid in pids:
        try:
            process = psutil.Process(pid)
            process.terminate()
            processes.append(process)
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(processes, timeout=grace_s)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            continue


def _reload_auth_settings() -> None:
    """Make this process read ``RAY_AUTH_MODE`` / ``RAY_AUTH_TOKEN`` again (Ray caches both once it is imported).

    Without it, a process that imported Ray before `start_ray` set the token would start a GCS
    that requires the token and then fail to present it ("InvalidAuthToken").
    """
    try:
        from ray._raylet import AuthenticationTokenLoader, Config
    except ImportError:  # a Ray without token authentication: nothing cached
        return
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def deploy(builder: Any, options: RayOptions, name: str = DEPLOYMENT) -> Any:
    """Deploy a `mmapps.serve.ray_replica.ReplicaApp` on Ray Serve (Ray started or joined per ``options``).

    Returns when every initial replica has loaded its model and is serving (Ray Serve waits for
    the application to be RUNNING); returns the ingress handle.

    Raises:
        RayStartError: Ray did not start, or no replica came up (its error is in the replica log).
    """
    options.check()
    start_ray(options)  # first: the token settings must be in the environment before Ray is imported
    from ray import serve

    from mmapps.serve.ray_replica import ServiceIngress

    try:
        serve.start(http_options={"host": options.host, "port": options.port}, proxy_location="HeadOnly")
        deployment = serve.deployment(
            ServiceIngress,
            name=name,
            autoscaling_config=options.autoscaling_config(),
            max_ongoing_requests=options.max_ongoing_requests,
            ray_actor_options={"num_cpus": options.num_cpus, "num_gpus": options.num_gpus},
            health_check_period_s=2.0,
            graceful_shutdown_timeout_s=20.0,
            max_constructor_retry_count=3,  # a model that cannot load fails the command instead of retrying for minutes
        )
        handle = serve.run(deployment.bind(builder), name=APP_NAME, route_prefix="/", blocking=False)
    except RuntimeError as err:
        raise RayStartError(f"Ray Serve could not start the {name!r} deployment: {str(err)[:400]}; the replica's log is "
                            "/tmp/ray/session_latest/logs/serve/replica_*.log") from None
    log.info("ray serve deployment running", extra={"engine": "ray", "replicas": replica_counts(name).get("RUNNING", 0)})
    return handle


def replica_counts(name: str = DEPLOYMENT) -> dict[str, int]:
    """Replicas of the deployment by state (``RUNNING``, ``STARTING``, ``STOPPING``...)."""
    from ray import serve

    app = serve.status().applications.get(APP_NAME)
    if app is None or name not in app.deployments:
        return {}
    return {str(state): int(n) for state, n in app.deployments[name].replica_states.items()}


def log_replicas(stop: Callable[[], bool], out: IO[str], interval_s: float = 0.5, name: str = DEPLOYMENT) -> list[dict]:
    """Write ``{"t", "running", "starting", "stopping"}`` every ``interval_s`` until ``stop()``; returns the rows."""
    rows, start = [], time.monotonic()
    while not stop():
        counts = replica_counts(name)
        row = {"t": round(time.monotonic() - start, 2), "running": counts.get("RUNNING", 0),
               "starting": counts.get("STARTING", 0), "stopping": counts.get("STOPPING", 0)}
        rows.append(row)
        out.write(json.dumps(row) + "\n")
        out.flush()
        time.sleep(interval_s)
    return rows


def shutdown() -> None:
    """Stop Serve and leave (or stop, when started here) Ray."""
    import ray

    if not ray.is_initialized():  # a failed start: serve.shutdown() would try to start Ray again
        return
    from ray import serve

    try:
        serve.shutdown()
    finally:
        ray.shutdown()


def serve_forever(builder: Any, options: RayOptions) -> None:
    """``serve --engine ray``: deploy, print where it listens, block until SIGINT/SIGTERM, shut down."""
    import signal
    import threading

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    deploy(builder, options)
    log.info(f"serving on http://{options.host}:{options.port} (Ray Serve, {options.min_replicas}-{options.max_replicas} replicas)",
             extra={"engine": "ray"})
    try:
        while not stop.wait(5.0):
            pass
    finally:
        shutdown()


def run(domain: Any, checkpoint: Path, settings: Any, host: str = LOOPBACK, port: int = 8000, keys_file: Path | None = None,
        audit_log: Path | None = None, version: str | None = None, options: RayOptions | None = None) -> None:
    """``mmapps <domain> serve --engine ray``: the same app as ``--engine uvicorn``, on Ray Serve replicas."""
    from mmapps.serve.auth import KeyStore
    from mmapps.serve.server import check_bind

    options = options or RayOptions()
    options.host, options.port = host, port
    options.check()
    keys = KeyStore.load(keys_file)  # refused here, before Ray starts, when the keys are wrong
    check_bind(host, None, None, len(keys))  # Ray Serve's proxy has no TLS of its own: loopback, or behind a TLS proxy
    audit = audit_log or (checkpoint.resolve().parent.parent / "serve-audit.jsonl" if checkpoint.is_file() else checkpoint / "serve-audit.jsonl")
    from mmapps.serve.ray_replica import ReplicaApp

    builder = ReplicaApp(domain.name, str(Path(checkpoint).resolve()), settings, str(keys_file.resolve()) if keys_file else None,
                         str(Path(audit).resolve()), version, loopback=options.address is None)
    serve_forever(builder, options)
