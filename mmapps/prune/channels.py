"""Structured channel pruning with torch-pruning: whole channels leave the CNN encoders, a domain
model's convolution blocks (e.g. the driving BEV backbone) and the fusion's feed-forward layers.

The model is traced once on a real batch (torch-pruning's dependency graph follows the autograd
graph), so coupled channels (residual additions, batch norms, concatenations, the next layer's
inputs) leave together. Interfaces keep their width: an encoder's last layer (its projection to
the fusion width), the fusion's model width (attention projections, residual stream, norms; heads
are tied to it), the heads, and for a domain's own model the last layer of each top-level block
and its head. Attention heads are out of scope: their width is the model width, shared by the
residual stream of every layer.

``amount`` is the share of channels removed from every prunable group (L2 magnitude of the
group's weights decides which ones).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mmapps.errors import ConfigError

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_LAYERS = (*_CONV, nn.Linear, nn.Embedding, nn.MultiheadAttention, nn.LSTM, nn.GRU)


@dataclass
class ChannelPruneResult:
    """What structured pruning removed.

    Attributes:
        layers: pruned layer (dotted path) -> (channels before, after).
        groups: number of coupled channel groups pruned.
    """

    layers: dict[str, tuple[int, int]]
    groups: int


def _layer_list(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, (*_CONV, nn.Linear))]


def _is_pretrained_transformer(module: nn.Module) -> bool:
    return hasattr(module, "config") and hasattr(module.config, "num_hidden_layers")


def prunable_layers(model: nn.Module) -> list[nn.Module]:
    """The layers whose output channels may be removed (the roots of torch-pruning's groups); see the module doc."""
    from mmapps.report.complexity import core_model

    core = core_model(model)
    allowed: list[nn.Module] = []
    if isinstance(getattr(core, "encoders", None), nn.ModuleDict):
        for encoder in core.encoders.values():
            frozen = {id(m) for sub in encoder.modules() if _is_pretrained_transformer(sub) for m in sub.modules()}
            attention = {id(m) for sub in encoder.modules() if isinstance(sub, nn.MultiheadAttention) for m in sub.modules()}
            layers = [m for m in _layer_list(encoder) if id(m) not in frozen and id(m) not in attention]
            allowed += layers[:-1]  # the last one projects to the fusion width
        for name, module in core.fusion.named_modules():
            if isinstance(module, nn.Linear) and name.split(".")[-1] == "linear1":
                allowed.append(module)  # feed-forward hidden width
            elif isinstance(module, nn.Sequential) and name.split(".")[-1] == "mlp":
                allowed += [m for m in module if isinstance(m, nn.Linear)][:-1]
        return allowed
    for name, child in model.named_children():
        if "head" in name:
            continue
        convs = [m for m in child.modules() if isinstance(m, _CONV)]
        allowed += convs[:-1]
    return allowed


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value] if value.is_floating_point() else []
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


def prune_channels(model: nn.Module, batch: Any, amount: float) -> ChannelPruneResult:
    """Remove `amount` of the output channels of every prunable group of `model`, in place.

    Args:
        model: the model (eval mode is used for tracing; the mode is restored).
        batch: one real batch of the model's input (a `Batch`) on the model's device.
        amount: share of channels removed, in [0, 1).

    Raises:
        ConfigError: `amount` out of range, or a model with no prunable layer.
    """
    import torch_pruning as tp

    if not 0.0 <= amount < 1.0:
        raise ConfigError(f"--amount {amount}: expected the share of channels removed, in [0, 1) (e.g. 0.3)")
    allowed = prunable_layers(model)
    if not allowed:
        raise ConfigError(f"{type(model).__name__}: no convolution or feed-forward layer can lose channels (only interface layers found)")
    names = {id(m): n for n, m in model.named_modules()}
    before = {names[id(m)]: _channels(m) for m in allowed}
    allowed_ids = {id(m) for m in allowed}
    ignored = [m for m in model.modules() if isinstance(m, _LAYERS) and id(m) not in allowed_ids]
    ignored += [m for m in model.modules() if _is_pretrained_transformer(m)]
    if amount == 0.0:
        return ChannelPruneResult({k: (v, v) for k, v in before.items()}, 0)
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch-pruning warns about every unwrapped parameter it leaves alone
            pruner = tp.pruner.BasePruner(
                model, batch, importance=tp.importance.GroupMagnitudeImportance(p=2), pruning_ratio=amount,
                ignored_layers=ignored, forward_fn=lambda m, b: m(b),
                output_transform=lambda out: sum(t.sum() for t in _tensors(out)),
            )
            groups = list(pruner.step(interactive=True))
            for group in groups:
                group.prune()
    finally:
        model.train(was_training)
    return ChannelPruneResult({k: (v, _channels(model.get_submodule(k))) for k, v in before.items()}, len(groups))


def _channels(module: nn.Module) -> int:
    if isinstance(module, nn.Linear):
        return module.out_features
    return module.out_channels
