"""Adapters-only checkpoints (safetensors): the trained adapter and head weights without the frozen base.

The file holds every trainable parameter (LoRA/IA3 adapters, heads, parts trained in full or
last-N) and the buffers of modules that own one (BatchNorm statistics of trained norms), plus the
run config in the metadata. Loading it needs the same model built from that config with the same
``finetune`` modes, its base weights (the pretraining it started from) loaded first.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from mmapps.errors import CheckpointError

FORMAT = "mmapps-adapters-1"


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trainable parameters and the buffers of modules with a trainable parameter of their own."""
    model = getattr(model, "module", model)
    state: dict[str, torch.Tensor] = {}
    for module_name, module in model.named_modules():
        own = list(module.named_parameters(recurse=False))
        if not any(p.requires_grad for _, p in own):
            continue
        prefix = f"{module_name}." if module_name else ""
        state.update({prefix + n: p.detach() for n, p in own if p.requires_grad})
        state.update({prefix + n: b.detach() for n, b in module.named_buffers(recurse=False) if b is not None and n in module._buffers and n not in module._non_persistent_buffers_set})
    return state


def save_adapters(path: Path, model: nn.Module, config_yaml: str, extra: dict | None = None) -> None:
    """Write the adapters-only checkpoint atomically."""
    from safetensors.torch import save

    from mmapps.train.checkpoint import atomic_write

    state = {k: v.contiguous().cpu() for k, v in adapter_state_dict(model).items()}
    payload = save(state, metadata={"format": FORMAT, "config": config_yaml, "extra": json.dumps(extra or {})})
    atomic_write(Path(path), lambda handle: handle.write(payload))


def load_adapters(model: nn.Module, path: Path) -> list[str]:
    """Load an adapters-only checkpoint into `model` (built and adapted the same way); return the keys loaded.

    Raises:
        CheckpointError: not an adapters file, or keys/shapes that this model does not have.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"adapters {path}: not found (expected checkpoints/adapters.safetensors of a run with lora/ia3 parts)")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except Exception as err:  # noqa: BLE001 - safetensors raises several error types for bad headers
        raise CheckpointError(f"adapters {path}: not a readable safetensors file ({type(err).__name__}: {err})") from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"adapters {path}: format={metadata.get('format')!r}, expected {FORMAT!r} (a normal checkpoint loads with evaluate, not as adapters)")
    target = getattr(model, "module", model)
    expected = target.state_dict()
    unknown = [k for k in state if k not in expected]
    wrong = [k for k in state if k in expected and tuple(expected[k].shape) != tuple(state[k].shape)]
    missing = [k for k in adapter_state_dict(target) if k not in state]
    if unknown or wrong or missing:
        raise CheckpointError(
            f"adapters {path}: do not match this model ({len(unknown)} unknown, {len(wrong)} wrong-shape, {len(missing)} missing tensors; "
            f"e.g. {(unknown + wrong + missing)[:3]}); build the model with the run's config and finetune modes first"
        )
    target.load_state_dict(state, strict=False)
    return sorted(state)
