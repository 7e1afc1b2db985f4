"""Standard task losses, usable from any domain's `TaskSpec.losses` as lazy references.

Signature: ``loss(outputs, targets, batch) -> scalar Tensor``. NaN targets are ignored.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


def multiclass_cross_entropy(outputs: Tensor, targets: Tensor, batch: Any = None) -> Tensor:
    """Cross-entropy of logits (B, C) [or (B, T, C)] against class indices; index < 0 is ignored."""
    return F.cross_entropy(outputs.flatten(0, -2).float(), targets.long().flatten(), ignore_index=-1)


def multilabel_bce(outputs: Tensor, targets: Tensor, batch: Any = None, pos_weight: Tensor | None = None) -> Tensor:
    """Per-label binary cross-entropy of logits, averaged over the labels that are not NaN."""
    targets = targets.float()
    known = ~torch.isnan(targets)
    if not known.any():
        return outputs.sum() * 0.0
    loss = F.binary_cross_entropy_with_logits(outputs.float(), torch.nan_to_num(targets), reduction="none", pos_weight=pos_weight)
    return (loss * known).sum() / known.sum()


def mean_squared_error(outputs: Tensor, targets: Tensor, batch: Any = None) -> Tensor:
    targets = targets.float()
    known = ~torch.isnan(targets)
    return ((outputs.float() - torch.nan_to_num(targets)) ** 2 * known).sum() / known.sum().clamp_min(1)
