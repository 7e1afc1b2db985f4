"""The shape of a pruned model, recorded in ``cfg.model.pruned`` and re-applied by ``build_model``.

A pruned checkpoint is a normal safetensors checkpoint whose config says how the pruned model
differs from the one its recipe builds: ``kept_layers`` (module path of a layer list -> indices
kept, applied first) and ``shapes`` (state-dict key -> new shape, for every tensor whose shape
changed). `apply_structure` rebuilds exactly that architecture (empty tensors of the recorded
shapes, module attributes such as ``out_channels`` updated), then the weights load strictly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from mmapps.errors import ConfigError


def state_shapes(model: nn.Module) -> dict[str, list[int]]:
    """State-dict key -> shape of every tensor of `model`."""
    return {key: list(value.shape) for key, value in model.state_dict().items()}


def changed_shapes(before: Mapping[str, list[int]], model: nn.Module) -> dict[str, list[int]]:
    """The keys of `model` whose shape differs from `before` (same keys expected: pruning renames nothing)."""
    after = state_shapes(model)
    missing = sorted(set(before) ^ set(after))
    assert not missing, f"pruning changed the state-dict keys: {missing[:5]}"
    return {key: shape for key, shape in after.items() if shape != before[key]}


def drop_layers(model: nn.Module, path: str, kept: list[int]) -> None:
    """Replace the layer list at `path` by its layers `kept` (in order); updates a Hugging Face ``config.num_hidden_layers``."""
    try:
        layers = model.get_submodule(path)
    except AttributeError:
        raise ConfigError(f"model.pruned.kept_layers: {path!r} is not a module of this model; the pruned config belongs to another model") from None
    if not isinstance(layers, nn.ModuleList) or not kept or max(kept) >= len(layers) or min(kept) < 0:
        raise ConfigError(f"model.pruned.kept_layers.{path}: {kept} does not select layers of a layer list of {len(layers) if isinstance(layers, nn.ModuleList) else 0}")
    parent_path, _, name = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, name, nn.ModuleList([layers[i] for i in kept]))
    for prefix in _prefixes(path):
        owner = model.get_submodule(prefix) if prefix else model
        config = getattr(owner, "config", None)
        if config is not None and hasattr(config, "num_hidden_layers"):
            config.num_hidden_layers = len(kept)
            break


def _prefixes(path: str) -> list[str]:
    parts = path.split(".")
    return [".".join(parts[:i]) for i in range(len(parts) - 1, -1, -1)]


def apply_structure(model: nn.Module, pruned: Any) -> nn.Module:
    """Give a freshly built `model` the architecture recorded in `pruned` (a ``PrunedConfig``); returns `model`.

    Raises:
        ConfigError: a recorded key or layer list that this model does not have.
    """
    for path, kept in pruned.kept_layers.items():
        drop_layers(model, path, list(kept))
    touched: dict[str, nn.Module] = {}
    for key, shape in pruned.shapes.items():
        module_path, _, name = key.rpartition(".")
        try:
            module = model.get_submodule(module_path) if module_path else model
        except AttributeError:
            module = None
        old = getattr(module, name, None) if module is not None else None
        if not isinstance(old, torch.Tensor):
            raise ConfigError(f"model.pruned.shapes: {key!r} is not a tensor of this model; the pruned config belongs to another model or recipe")
        new = torch.empty(shape, dtype=old.dtype, device=old.device)
        if isinstance(old, nn.Parameter):
            setattr(module, name, nn.Parameter(new, requires_grad=old.requires_grad))
        else:
            module._buffers[name] = new
        touched[module_path] = module
    for module in touched.values():
        update_attributes(module)
    return model


def update_attributes(module: nn.Module) -> None:
    """Set a layer's size attributes (channels, features, normalised shape) from its tensors."""
    weight = getattr(module, "weight", None)
    if isinstance(module, nn.modules.conv._ConvNd):
        out_dim, in_dim = (1, 0) if module.transposed else (0, 1)
        module.out_channels = weight.shape[out_dim] * (module.groups if module.transposed else 1)
        module.in_channels = weight.shape[in_dim] * (1 if module.transposed else module.groups)
    elif isinstance(module, nn.Linear):
        module.out_features, module.in_features = weight.shape
    elif isinstance(module, nn.modules.batchnorm._NormBase):
        module.num_features = (weight if weight is not None else module.running_mean).shape[0]
    elif isinstance(module, nn.LayerNorm) and weight is not None:
        module.normalized_shape = tuple(weight.shape)
    elif isinstance(module, nn.GroupNorm) and weight is not None:
        module.num_channels = weight.shape[0]
