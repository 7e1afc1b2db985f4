"""Standard post-processing: model outputs -> one JSON-able prediction per sample."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def softmax_scores(outputs: Tensor, batch: Any = None) -> list[dict[str, Any]]:
    """Logits (B, C) [or (B, T, C)] -> ``{"scores": class probabilities, "label": argmax}`` per sample
    (per time step: scores (T, C) and one label per step)."""
    probs = torch.softmax(outputs.float(), dim=-1).cpu()
    return [{"scores": row.tolist(), "label": row.argmax(-1).tolist()} for row in probs]


def sigmoid_scores(outputs: Tensor, batch: Any = None) -> list[dict[str, Any]]:
    """Logits (B, L) [or (B, T, L)] -> ``{"scores": per-label probabilities}`` per sample."""
    probs = torch.sigmoid(outputs.float()).cpu()
    return [{"scores": row.tolist()} for row in probs]


def regression_values(outputs: Tensor, batch: Any = None) -> list[dict[str, Any]]:
    """Outputs (B, K) -> ``{"values": K numbers}`` per sample."""
    return [{"values": row.tolist()} for row in outputs.float().cpu()]
