"""Build a `ServiceState` for a domain and a model: keys, audit log, decoder pool, first version, warm-up.

Used by ``mmapps <domain> serve`` and by tests; the caller then calls
`mmapps.serve.app.create_app` and runs it (`mmapps.serve.server`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mmapps.keyfile import read_key_file, user_config_dir
from mmapps.serve.audit import AuditLog
from mmapps.serve.auth import KeyStore
from mmapps.serve.decoders import DecoderPool
from mmapps.serve.hooks import serve_hooks
from mmapps.serve.runner import warm_up
from mmapps.serve.state import ServiceSettings, ServiceState, default_metrics
from mmapps.serve.versions import ModelVersions

ENV_DEID_KEY = "MMAPPS_SERVE_DEID_KEY_FILE"


def deid_key_path() -> Path:
    return Path(os.environ.get(ENV_DEID_KEY) or user_config_dir() / "serve-deid.key").expanduser()


def decoder_imports(domain: Any) -> list[str]:
    """Modules a decoder child imports up front: torch, the domain's readers and its `ServeHooks.decoder_imports`."""
    modules = ["torch", "numpy", "mmapps.data", "mmapps.serve.caps"]
    ref = domain.build_datasets
    if isinstance(ref, str):
        modules.append(ref.partition(":")[0])
    hooks = serve_hooks(domain)
    if hooks.prepare_upload:
        modules.append(hooks.prepare_upload.partition(":")[0])
    return modules + [m for m in hooks.decoder_imports if m not in modules]


def build_state(domain: Any, checkpoint: Path, settings: ServiceSettings | None = None, keys_file: Path | None = None,
                audit_path: Path | None = None, version: str | None = None, metrics: Any = None, keys: KeyStore | None = None,
                start_decoders: bool = True) -> ServiceState:
    """A ready service: keys loaded, decoder children started, ``checkpoint`` loaded as ``version`` and warmed up.

    Raises:
        ConfigError: bad keys file / environment keys, loose key files.
        CheckpointError: the model cannot be loaded.
    """
    settings = settings or ServiceSettings()
    metrics = metrics if metrics is not None else default_metrics()
    keys = keys if keys is not None else KeyStore.load(keys_file)
    state = ServiceState(domain=domain, versions=None, settings=settings, keys=keys, audit=AuditLog(audit_path), metrics=metrics)
    state.extra["deid_key"] = read_key_file(deid_key_path(), "the key that de-identifies served DICOM files", ENV_DEID_KEY)
    state.versions = ModelVersions(domain.name, settings, metrics, warm=warm_up)
    pool = DecoderPool(settings.decode_workers, decoder_imports(domain), settings.decode_memory_mb, settings.decode_timeout_s)
    if start_decoders:
        pool.start()
    state.decoders = pool
    loaded = state.versions.load(Path(checkpoint), domain, version)
    state.audit.write(event="model_load", model=domain.name, version=loaded.name, sha256=loaded.runner.sha256)
    state.warmed = True
    return state


def close_state(state: ServiceState) -> None:
    if state.decoders is not None:
        state.decoders.close()
    state.audit.close()
