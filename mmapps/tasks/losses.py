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


class MultiLabelBCE:
    """The multi-label BCE of one run, with ``pos_weight`` per ``data.options.pos_weight`` (a loss class).

    ``auto`` sets pos_weight = negatives / positives per label on the training split (clamped to
    [1, 50], see `mmapps.tasks.pos_weight`); ``none`` leaves it off; a list gives the weights; a
    mapping task -> value sets it per task. Declared as ``"mmapps.tasks.losses:MultiLabelBCE"`` in
    ``TaskSpec.losses``, it is built once per run by the trainer as ``cls(cfg, train_set, task=...)``.

    Args:
        cfg: the run config.
        train_set: the training dataset (see `mmapps.tasks.pos_weight.train_targets` for the fast path).
        task: the task this loss serves.
    """

    default_pos_weight: str = "none"

    def __init__(self, cfg: Any, train_set: Any, task: str | None = None) -> None:
        from mmapps.tasks.pos_weight import configured_pos_weight, pos_weight_from_targets, train_targets

        options = getattr(getattr(cfg, "data", None), "options", None) or {}
        task = task or _only_task(train_set)
        choice = configured_pos_weight(options.get("pos_weight", self.default_pos_weight), task)
        if choice == "auto":
            choice = pos_weight_from_targets(train_targets(train_set, task))
        self.task = task
        self.pos_weight = choice
        self._weight: Tensor | None = None

    def __call__(self, outputs: Tensor, targets: Tensor, batch: Any = None) -> Tensor:
        if self.pos_weight is not None and (self._weight is None or self._weight.device != outputs.device):
            self._weight = torch.tensor(self.pos_weight, dtype=torch.float32, device=outputs.device)
        return multilabel_bce(outputs, targets, batch, pos_weight=self._weight if self.pos_weight is not None else None)


class AutoPosWeightBCE(MultiLabelBCE):
    """`MultiLabelBCE` whose default is ``pos_weight=auto`` (``data.options.pos_weight`` still overrides it)."""

    default_pos_weight = "auto"


def _only_task(train_set: Any) -> str:
    """The task of a dataset whose samples carry one target (for trainers that do not pass ``task``)."""
    from mmapps.errors import ConfigError

    tasks = sorted(train_set[0].targets) if len(train_set) else []
    if len(tasks) != 1:
        raise ConfigError(f"MultiLabelBCE: cannot tell which task it serves (the samples carry targets {tasks}); build it with task=<name>")
    return tasks[0]
