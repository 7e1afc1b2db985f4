"""Where ``evaluate`` / ``predict`` get their model: a PyTorch checkpoint or an exported folder.

``--checkpoint run/checkpoints/best.safetensors`` builds the PyTorch model; ``--checkpoint
export/model.onnx`` (or the export folder, or its ``model.json``) verifies the export's SHA-256
and runs the graph on onnxruntime through the same pre- and post-processing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmapps.errors import CheckpointError


def is_export(path: Path) -> bool:
    """True for an ``.onnx`` file, an export's ``model.json``, or a folder holding ``model.json``."""
    path = Path(path)
    return path.suffix == ".onnx" or path.name == "model.json" or (path.is_dir() and (path / "model.json").is_file())


def exported_config(path: Path, overrides: dict[str, Any] | None, domain: str | None) -> Any:
    """The training config stored in an export's sidecar (verified), with `overrides` merged in."""
    import yaml

    from mmapps.config import deep_merge, validate_config
    from mmapps.export.sidecar import read_sidecar

    sidecar, folder = read_sidecar(Path(path))
    if domain is not None and sidecar.domain != domain:
        raise CheckpointError(f"export {path}: this model was exported from the {sidecar.domain} domain, not {domain}; use it with `mmapps {sidecar.domain} evaluate/predict --checkpoint {path}`")
    values = yaml.safe_load(sidecar.config)
    if not isinstance(values, dict):
        raise CheckpointError(f"export {folder}: the config in model.json is a {type(values).__name__}, expected a mapping of config fields")
    return validate_config(deep_merge(values, overrides or {}))


def load_model(checkpoint: Path, cfg: Any, domain: Any, state: dict[str, Any] | None, device: Any) -> Any:
    """The model to predict with: `mmapps.export.session.OnnxModel` for an export, else the PyTorch model with `state`."""
    if is_export(Path(checkpoint)):
        from mmapps.export.session import load_export

        return load_export(Path(checkpoint))
    from mmapps.models.build import build_model
    from mmapps.train import checkpoint as ckpt

    model = build_model(cfg, domain)
    ckpt.load_weights(model, state, Path(checkpoint))
    return model.to(device)
