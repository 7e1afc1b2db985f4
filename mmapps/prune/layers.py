"""Layer dropping for pretrained (frozen) text transformers: the top layers go, the lower ones stay.

Torch-pruning cannot narrow a pretrained transformer without breaking the width its attention
heads and residual stream share, so a frozen text encoder is made cheaper by depth instead:
dropping the top layers keeps the lower layers' features exact and loses the least accuracy
(Sajjad et al., "On the effect of dropping layers of pre-trained transformer models", 2023).
"""

from __future__ import annotations

from torch import nn

from mmapps.errors import ConfigError
from mmapps.prune.structure import drop_layers


def text_layer_lists(model: nn.Module) -> dict[str, nn.ModuleList]:
    """Dotted path -> layer list of every pretrained transformer inside `model` (e.g. the text encoder's backbone)."""
    found = {}
    for name, module in model.named_modules():
        config = getattr(module, "config", None)
        if config is None or not hasattr(config, "num_hidden_layers"):
            continue
        for sub_name, sub in module.named_modules():
            if isinstance(sub, nn.ModuleList) and len(sub) == config.num_hidden_layers and sub_name.split(".")[-1] in ("layer", "layers", "h", "block"):
                found[f"{name}.{sub_name}" if name else sub_name] = sub
                break
    return found


def drop_text_layers(model: nn.Module, count: int) -> dict[str, list[int]]:
    """Drop the top `count` layers of every pretrained text transformer in `model`; returns path -> kept indices.

    Raises:
        ConfigError: `count` negative, or not smaller than a transformer's layer count, or no text transformer.
    """
    if count == 0:
        return {}
    lists = text_layer_lists(model)
    if count < 0 or not lists:
        raise ConfigError(f"--drop-text-layers {count}: {'expected 0 or more' if count < 0 else 'this model has no pretrained text transformer'}")
    kept = {}
    for path, layers in lists.items():
        if count >= len(layers):
            raise ConfigError(f"--drop-text-layers {count}: the text transformer at {path} has {len(layers)} layers; at least one must stay")
        kept[path] = list(range(len(layers) - count))
        drop_layers(model, path, kept[path])
    return kept
