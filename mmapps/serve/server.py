"""Run the service on uvicorn: loopback by default, TLS required off loopback, SIGTERM drains.

SIGTERM (or Ctrl-C): readiness turns off first (``/v2/health/ready`` answers 503 so a load
balancer stops sending), the server keeps answering for ``drain_grace_s``, waits until no request
is in flight (at most ``drain_timeout_s``), then uvicorn stops accepting and exits. A second
signal exits at once.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from pathlib import Path
from typing import Any

from mmapps.errors import ConfigError
from mmapps.serve.state import ServiceState


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, tls_cert: Path | None, tls_key: Path | None, n_keys: int) -> None:
    """Refuse a non-loopback bind without TLS, and any service without an API key."""
    if n_keys == 0:
        raise ConfigError("no API key configured: give --keys-file (lines written by `python -m mmapps.serve.auth new <id>`) or set "
                          "MMAPPS_API_KEYS='<id>:<scopes>:<secret>'; every endpoint but the health checks needs a key")
    if (tls_cert is None) != (tls_key is None):
        raise ConfigError("--tls-cert and --tls-key go together: give both (PEM certificate chain and its private key) or neither")
    if not is_loopback(host) and tls_cert is None:
        raise ConfigError(f"--host {host}: not a loopback address, so TLS is required: give --tls-cert and --tls-key "
                          "(or keep --host 127.0.0.1 behind a TLS-terminating proxy; see docs/deploy.md, Serving)")
    for path in (tls_cert, tls_key):
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"TLS file {path}: not found")


def run_uvicorn(state: ServiceState, host: str, port: int, tls_cert: Path | None = None, tls_key: Path | None = None,
                drain_grace_s: float = 0.0, drain_timeout_s: float = 30.0, ready_file: Path | None = None) -> None:
    """Serve ``state`` until SIGTERM / SIGINT (blocking)."""
    import uvicorn

    from mmapps.serve.app import create_app

    check_bind(host, tls_cert, tls_key, len(state.keys) if state.keys is not None else 0)
    config = uvicorn.Config(create_app(state), host=host, port=port, ssl_certfile=str(tls_cert) if tls_cert else None,
                            ssl_keyfile=str(tls_key) if tls_key else None, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=max(1, int(drain_timeout_s)), server_header=False, lifespan="on")
    server = DrainingServer(config, state, drain_grace_s, drain_timeout_s, ready_file)
    server.run()


class DrainingServer:
    """A uvicorn server whose first exit signal drains before stopping (see the module docstring)."""

    def __new__(cls, config: Any, state: ServiceState, grace_s: float, timeout_s: float, ready_file: Path | None) -> Any:
        import uvicorn

        class _Server(uvicorn.Server):
            def handle_exit(self, sig: int, frame: Any) -> None:
                if state.draining:
                    return super().handle_exit(sig, frame)
                state.draining = True
                threading.Thread(target=self._drain, daemon=True).start()

            def _drain(self) -> None:
                time.sleep(grace_s)
                end = time.monotonic() + timeout_s
                while state.in_flight > 0 and time.monotonic() < end:
                    time.sleep(0.02)
                state.audit.write(event="shutdown", reason="drained" if state.in_flight == 0 else f"{state.in_flight} request(s) still running at the drain timeout")
                self.should_exit = True

            async def startup(self, sockets: Any = None) -> None:
                await super().startup(sockets)
                if ready_file is not None:
                    ready_file.write_text(f"{self.servers[0].sockets[0].getsockname()[1] if self.servers else ''}\n")

        return _Server(config)
