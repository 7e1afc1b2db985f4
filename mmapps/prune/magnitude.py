"""Unstructured magnitude pruning (``torch.nn.utils.prune``): the smallest weights become zeros.

The tensors keep their shapes, so dense CPU/GPU kernels do exactly the same work: the gain is a
file that compresses (zeros) and a model ready for sparse runtimes, not a faster dense model.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from mmapps.errors import ConfigError


@dataclass
class MagnitudePruneResult:
    """Weights zeroed: per layer and overall (in the pruned layers)."""

    layers: dict[str, float]
    zeroed: int
    total: int


def prune_magnitude(model: nn.Module, amount: float) -> MagnitudePruneResult:
    """Zero the `amount` smallest-magnitude weights (L1, per layer) of every trainable convolution and linear layer
    (interfaces included: zeros change no width; a frozen pretrained text transformer is left alone), made
    permanent, so the state dict holds plain weights and no masks."""
    import torch.nn.utils.prune as tprune

    if not 0.0 <= amount < 1.0:
        raise ConfigError(f"--amount {amount}: expected the share of weights zeroed, in [0, 1) (e.g. 0.3)")
    names = {id(m): n for n, m in model.named_modules()}
    frozen = {id(m) for sub in model.modules() if hasattr(getattr(sub, "config", None), "num_hidden_layers") for m in sub.modules()}
    targets = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)) and id(m) not in frozen]
    layers, zeroed, total = {}, 0, 0
    for module in targets:
        if amount > 0:
            tprune.l1_unstructured(module, "weight", amount=amount)
            tprune.remove(module, "weight")
        zeros = int((module.weight == 0).sum())
        layers[names[id(module)]] = zeros / module.weight.numel()
        zeroed, total = zeroed + zeros, total + module.weight.numel()
    return MagnitudePruneResult(layers, zeroed, total)


def compressed_size(path: Path) -> int:
    """Bytes of `path` after zlib (level 6): what an archive or a compressing store would keep."""
    compressor = zlib.compressobj(6)
    size = 0
    with Path(path).open("rb") as handle:
        while chunk := handle.read(1 << 20):
            size += len(compressor.compress(chunk))
    return size + len(compressor.flush())


def sparsity(model: nn.Module) -> float:
    """Share of zeros over every floating-point parameter."""
    params = [p for p in model.parameters() if p.is_floating_point()]
    total = sum(p.numel() for p in params)
    return float(sum(int((p == 0).sum()) for p in params)) / max(total, 1) if params else 0.0

