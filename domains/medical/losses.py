"""Findings loss: per-label BCE on logits, NaN targets masked, optional per-label pos_weight.

``data.options.pos_weight`` = ``auto`` sets pos_weight = negatives / positives per finding from the
training split (clamped to [1, 50]) when the datasets are built; ``none`` (default) leaves it off.
The weight is held here because the core loss contract is ``fn(outputs, targets, batch)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_POS_WEIGHT: dict[str, Any] = {"value": None}


def set_pos_weight(train_targets: np.ndarray | None) -> list[float] | None:
    """Set (or clear, with None) the pos_weight from training targets ``(N, L)`` with NaN = ignored."""
    if train_targets is None or len(train_targets) == 0:
        _POS_WEIGHT["value"] = None
        return None
    pos = np.nansum(train_targets == 1, axis=0).astype(float)
    neg = np.nansum(train_targets == 0, axis=0).astype(float)
    weight = np.clip(neg / np.maximum(pos, 1.0), 1.0, 50.0)
    _POS_WEIGHT["value"] = weight.tolist()
    return _POS_WEIGHT["value"]


def findings_bce(outputs: Any, targets: Any, batch: Any = None) -> Any:
    """Mean BCE-with-logits over known (non-NaN) labels of ``outputs`` (B, L) against ``targets`` (B, L)."""
    import torch

    from mmapps.tasks.losses import multilabel_bce

    weight = _POS_WEIGHT["value"]
    pos_weight = torch.tensor(weight, dtype=torch.float32, device=outputs.device) if weight is not None and len(weight) == outputs.shape[-1] else None
    return multilabel_bce(outputs, targets, batch, pos_weight=pos_weight)
