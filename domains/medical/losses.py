"""Findings loss: per-label BCE on logits, NaN targets masked, optional per-label pos_weight.

``data.options.pos_weight`` = ``auto`` sets pos_weight = negatives / positives per finding on the
training split (clamped to [1, 50]); ``none`` (default) leaves it off. `FindingsBCE` is a loss
class, so the core builds it once per run from the config and the training set.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_POS_WEIGHT = 50.0


def pos_weight_from_targets(train_targets: np.ndarray) -> list[float]:
    """negatives / positives per finding of ``(N, L)`` targets (NaN = ignored), clamped to [1, 50]."""
    pos = np.nansum(train_targets == 1, axis=0).astype(float)
    neg = np.nansum(train_targets == 0, axis=0).astype(float)
    return np.clip(neg / np.maximum(pos, 1.0), 1.0, MAX_POS_WEIGHT).tolist()


def findings_bce(outputs: Any, targets: Any, batch: Any = None, pos_weight: list[float] | None = None) -> Any:
    """Mean BCE-with-logits over known (non-NaN) labels of ``outputs`` (B, L) against ``targets`` (B, L)."""
    import torch

    from mmapps.tasks.losses import multilabel_bce

    weight = torch.tensor(pos_weight, dtype=torch.float32, device=outputs.device) if pos_weight is not None else None
    return multilabel_bce(outputs, targets, batch, pos_weight=weight)


class FindingsBCE:
    """The findings task's loss for one run: `findings_bce` with pos_weight per ``data.options.pos_weight``.

    Args:
        cfg: the run config.
        train_set: the training `MedicalStudyDataset` (its studies' targets give the weights).
    """

    def __init__(self, cfg: Any, train_set: Any) -> None:
        from mmapps_domains.medical.options import parse_options

        options = parse_options(cfg.data.options)
        studies = getattr(train_set, "studies", None) or []
        self.pos_weight = pos_weight_from_targets(np.stack([s.targets for s in studies])) if options.pos_weight == "auto" and studies else None

    def __call__(self, outputs: Any, targets: Any, batch: Any = None) -> Any:
        return findings_bce(outputs, targets, batch, self.pos_weight)
