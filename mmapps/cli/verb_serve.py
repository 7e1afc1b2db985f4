"""The `serve` verb of every domain: the model behind FastAPI on uvicorn (or Ray Serve, ``--engine ray``)."""

from __future__ import annotations

from pathlib import Path

import typer

from mmapps.cli.errors import fail, user_errors
from mmapps.plugins import get_domain


def register(app: typer.Typer, name: str) -> None:
    """Add `mmapps <name> serve` to the domain's sub-app."""

    @app.command("serve")
    @user_errors
    def serve(
        checkpoint: Path = typer.Option(..., "--checkpoint", help="RUN/checkpoints/best.safetensors, or an export folder (model.json hashes checked)"),
        host: str = typer.Option("127.0.0.1", "--host", help="bind address; anything but loopback needs --tls-cert/--tls-key"),
        port: int = typer.Option(8000, "--port", min=0, max=65535),
        keys_file: Path | None = typer.Option(None, "--keys-file", help="API keys (digests; `python -m mmapps.serve.auth new ID`); or MMAPPS_API_KEYS"),
        tls_cert: Path | None = typer.Option(None, "--tls-cert", help="PEM certificate (chain)"),
        tls_key: Path | None = typer.Option(None, "--tls-key", help="PEM private key"),
        audit_log: Path | None = typer.Option(None, "--audit-log", help="append-only JSON-lines audit log (default <run>/serve-audit.jsonl)"),
        version: str | None = typer.Option(None, "--version", help="name of the served version (default: the start of its SHA-256)"),
        engine: str = typer.Option("uvicorn", "--engine", help="uvicorn (one process) or ray (Ray Serve replicas)"),
        max_body_mb: float = typer.Option(64.0, "--max-body-mb", min=0.001, help="largest request body (413 above)"),
        max_json_mb: float = typer.Option(8.0, "--max-json-mb", min=0.001, help="largest JSON part of a v2 inference request"),
        timeout: float = typer.Option(60.0, "--timeout", min=0.1, help="seconds a request may take (504 after)"),
        rate: float = typer.Option(50.0, "--rate", help="requests per second per key (0: unlimited)"),
        burst: int = typer.Option(100, "--burst", min=1, help="requests a key may send at once"),
        max_batch_size: int = typer.Option(8, "--max-batch-size", min=1, help="micro-batch size (1: no batching)"),
        max_batch_delay_ms: float = typer.Option(5.0, "--max-batch-delay-ms", min=0.0, help="how long a request waits for batch company"),
        max_in_flight: int | None = typer.Option(None, "--max-in-flight", min=1, help="requests in the model path at once (default 2 x batch size + decoders)"),
        max_queued: int | None = typer.Option(None, "--max-queued", min=0, help="requests waiting for the model path; more get 503 + Retry-After (default max(32, 4 x in-flight))"),
        decode_workers: int = typer.Option(2, "--decode-workers", min=1, help="decoder child processes"),
        decode_timeout: float = typer.Option(30.0, "--decode-timeout", min=0.1, help="seconds a decode may take (the child is killed after)"),
        decode_memory_mb: int = typer.Option(4096, "--decode-memory-mb", min=64, help="memory a decoder child may add"),
        max_pixels: int = typer.Option(40_000_000, "--max-pixels", min=1, help="pixel cap per image (all frames of a DICOM)"),
        max_frames: int = typer.Option(3000, "--max-frames", min=1, help="frame cap per video"),
        max_points: int = typer.Option(500_000, "--max-points", min=1, help="point cap per cloud"),
        max_files: int = typer.Option(16, "--max-files", min=1, help="files per request"),
        store_inputs: Path | None = typer.Option(None, "--store-inputs", help="debugging: store de-identified inputs (never notes or chat) here"),
        no_gradcam: bool = typer.Option(False, "--no-gradcam", help="refuse gradcam=true"),
        no_docs: bool = typer.Option(False, "--no-docs", help="no /docs and /openapi.json"),
        drain_grace: float = typer.Option(0.0, "--drain-grace", min=0.0, help="seconds to keep serving after readiness turns off on SIGTERM"),
        drain_timeout: float = typer.Option(30.0, "--drain-timeout", min=0.0, help="seconds to wait for in-flight requests on SIGTERM"),
        address: str | None = typer.Option(None, "--address", help="--engine ray: an existing Ray cluster (default: a local one on loopback, token auth on)"),
        min_replicas: int = typer.Option(1, "--min-replicas", min=0, help="--engine ray: fewest replicas"),
        max_replicas: int = typer.Option(1, "--max-replicas", min=1, help="--engine ray: most replicas (autoscaling above --min-replicas)"),
        target_ongoing_requests: float = typer.Option(2.0, "--target-ongoing-requests", min=0.01, help="--engine ray: requests per replica the autoscaler aims at"),
        num_cpus: float = typer.Option(1.0, "--num-cpus", min=0.0, help="--engine ray: CPUs reserved per replica"),
        num_gpus: float = typer.Option(0.0, "--num-gpus", min=0.0, help="--engine ray: GPUs reserved per replica"),
        max_ongoing_requests: int = typer.Option(8, "--max-ongoing-requests", min=1, help="--engine ray: requests a replica takes at once (more wait in Ray's router)"),
        upscale_delay: float = typer.Option(30.0, "--upscale-delay-s", min=0.0, help="--engine ray: seconds a scale-up decision must hold (Ray's default 30)"),
        downscale_delay: float = typer.Option(600.0, "--downscale-delay-s", min=0.0, help="--engine ray: seconds a scale-down decision must hold (Ray's default 600)"),
        metrics_interval: float = typer.Option(10.0, "--autoscale-metrics-interval-s", min=0.1, help="--engine ray: how often replicas report their load"),
        look_back: float = typer.Option(30.0, "--autoscale-look-back-s", min=0.1, help="--engine ray: the window the autoscaler averages the load over"),
    ) -> None:
        """Serve the model: domain endpoints on raw files, KServe v2 on tensors, API keys, audit log."""
        from mmapps.serve.server import check_bind
        from mmapps.serve.service import build_state, close_state
        from mmapps.serve.state import ServiceSettings

        domain = get_domain(name)
        settings = ServiceSettings(
            max_body_bytes=int(max_body_mb * 2**20), max_json_bytes=int(max_json_mb * 2**20), request_timeout_s=timeout, rate_per_key=rate, rate_burst=burst,
            max_batch_size=max_batch_size, max_batch_delay_ms=max_batch_delay_ms, max_in_flight=max_in_flight, max_queued=max_queued, decode_workers=decode_workers, decode_timeout_s=decode_timeout,
            decode_memory_mb=decode_memory_mb, max_pixels=max_pixels, max_frames=max_frames, max_points=max_points, max_files=max_files,
            store_inputs=store_inputs, gradcam=not no_gradcam, docs=not no_docs,
        )
        if engine == "ray":
            from mmapps.serve import (
                ray_engine,  # S2: Ray Serve deployment of the same app
            )

            options = ray_engine.RayOptions(address=address, min_replicas=min_replicas, max_replicas=max_replicas,
                                            target_ongoing_requests=target_ongoing_requests, max_ongoing_requests=max_ongoing_requests,
                                            num_cpus=num_cpus, num_gpus=num_gpus, upscale_delay_s=upscale_delay, downscale_delay_s=downscale_delay,
                                            metrics_interval_s=metrics_interval, look_back_period_s=look_back)
            ray_engine.run(domain, checkpoint, settings, host=host, port=port, keys_file=keys_file, audit_log=audit_log, version=version, options=options)
            return
        if engine != "uvicorn":
            fail(f"--engine {engine!r}: expected uvicorn or ray")
        from mmapps.serve.auth import KeyStore

        keys = KeyStore.load(keys_file)
        check_bind(host, tls_cert, tls_key, len(keys))  # before the seconds of model loading
        audit = audit_log or (checkpoint.resolve().parent.parent / "serve-audit.jsonl" if checkpoint.is_file() else checkpoint / "serve-audit.jsonl")
        state = build_state(domain, checkpoint, settings, audit_path=audit, version=version, keys=keys)
        scheme = "https" if tls_cert else "http"
        typer.echo(f"serving {name} version {state.versions.active} on {scheme}://{host}:{port} (audit log {audit}); SIGTERM drains", err=True)
        from mmapps.serve.server import run_uvicorn

        try:
            run_uvicorn(state, host, port, tls_cert, tls_key, drain_grace, drain_timeout)
        finally:
            close_state(state)
