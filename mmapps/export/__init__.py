"""Export a trained mmapps model to ONNX, with its sidecar, model card and Triton repository.

Public API:

- `export_checkpoint(checkpoint, domain, out, opset, quantize)` -> `ExportResult` (the CLI's
  ``mmapps <domain> export``); parity against PyTorch on validation is part of it.
- `load_export(path)` -> `OnnxModel`: verifies every SHA-256 of the folder and runs the graph on
  onnxruntime, callable on an mmapps `Batch` like the PyTorch model.
- `read_sidecar(path)` / `write_sidecar(folder, sidecar)`: ``model.json``.
- `write_triton_repository(folder, name, sidecar, ...)` / `triton_config(...)` / `read_triton_config(path)`.
- `ExportAdapter` / `GraphRuntime` (`mmapps.export.adapter`): the contract a domain with its own
  ``build_model`` implements and names in ``Domain.export``.

See docs/deploy.md.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "export_checkpoint": "mmapps.export.export",
    "ExportResult": "mmapps.export.export",
    "load_export": "mmapps.export.session",
    "OnnxModel": "mmapps.export.session",
    "create_session": "mmapps.export.session",
    "read_sidecar": "mmapps.export.sidecar",
    "write_sidecar": "mmapps.export.sidecar",
    "Sidecar": "mmapps.export.sidecar",
    "ExportIntegrityError": "mmapps.export.sidecar",
    "TensorSpec": "mmapps.export.spec",
    "write_triton_repository": "mmapps.export.triton",
    "triton_config": "mmapps.export.triton",
    "read_triton_config": "mmapps.export.triton",
    "ExportAdapter": "mmapps.export.adapter",
    "GraphRuntime": "mmapps.export.adapter",
    "ParityError": "mmapps.export.parity",
}


def __getattr__(name: str) -> Any:  # lazy: importing mmapps.export does not import torch or onnx
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mmapps.export' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)


__all__ = list(_EXPORTS)
