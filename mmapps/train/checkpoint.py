"""Checkpoints that load without unpickling arbitrary objects, written atomically.

- Inference checkpoint: ``*.safetensors`` holding the weights, with the resolved config (YAML)
  and the label maps (JSON) in its metadata; enough to rebuild the model and predict.
- Resumable state: ``last.pt`` of tensors and plain values only (model, optimiser, step, RNG),
  loaded with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from mmapps.errors import CheckpointError

FORMAT = "mmapps-checkpoint-v1"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same folder, then rename over `path` (never truncated)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


def save_inference_checkpoint(path: Path, model: nn.Module, config_yaml: str, labels: dict[str, list[str]], extra: dict[str, Any] | None = None) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in unwrap(model).state_dict().items()}
    metadata = {"format": FORMAT, "config": config_yaml, "labels": json.dumps(labels), "extra": json.dumps(extra or {})}
    atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata=metadata))


def read_inference_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Return (state_dict, metadata). Raises `CheckpointError` for a missing, corrupted or foreign file."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: not found (expected a .safetensors file written by mmapps, e.g. <run>/checkpoints/best.safetensors)")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as err:  # safetensors raises several error types for bad headers
        raise CheckpointError(f"checkpoint {path}: not a readable safetensors file ({type(err).__name__}: {err}); it may be truncated or corrupted") from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: no mmapps metadata (format={metadata.get('format')!r}, expected {FORMAT!r}); it was not written by mmapps")
    return state, metadata


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """Load a state dict strictly, explaining a mismatch instead of dumping key lists."""
    target = unwrap(model)
    expected = target.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong_shape:
        raise CheckpointError(
            f"checkpoint {source}: does not match this model ({len(missing)} missing, {len(unexpected)} unexpected, "
            f"{len(wrong_shape)} wrong-shape tensors; e.g. {(missing + unexpected + wrong_shape)[:3]}). "
            "It belongs to another model, recipe or domain."
        )
    target.load_state_dict(state)


def save_training_state(path: Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_training_state(path: Path) -> dict[str, Any]:
    if not Path(path).is_file():
        raise CheckpointError(f"resume: no resumable checkpoint at {path}; start without --resume, or point --resume at a run directory that has checkpoints/last.pt")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"checkpoint {path}: cannot be loaded safely ({type(err).__name__}: {str(err).splitlines()[0]}); it may be truncated, corrupted, or contain objects mmapps never writes") from None
