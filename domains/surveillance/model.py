"""Model assembly: the core encoders -> fusion -> heads, sized to the configured event classes.

The core builds heads from the domain's declared ``TaskSpec.labels``; this domain lets the data
options choose the classes (XD-Violence, UCF-Crime, demo), so the task labels are replaced by
``data.options.classes`` before delegating to the core builder.

`WindowAlignedModel` pads every modality to the batch's window count before the core model runs:
a modality absent from a whole batch collates to length 1, while per-time-step fusion needs
the same T for every modality.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from mmapps.data.sample import Batch, ModalityBatch

from mmapps_domains.surveillance.options import data_options


def with_classes(domain: Any, classes: list[str]) -> Any:
    """A copy of ``domain`` whose ``events`` task has ``classes`` as labels."""
    tasks = tuple(dataclasses.replace(t, labels=tuple(classes)) if t.name == "events" else t for t in domain.tasks)
    return dataclasses.replace(domain, tasks=tasks)


def align_windows(mb: ModalityBatch, T: int) -> ModalityBatch:
    """Zero-pad (or cut) a padded modality batch to T windows; padding is masked out."""
    import torch

    if mb.mask is None or mb.data.shape[1] == T:
        return mb
    n = min(T, mb.data.shape[1])
    data = mb.data.new_zeros((mb.data.shape[0], T) + tuple(mb.data.shape[2:]))  # (B, T, ...)
    data[:, :n] = mb.data[:, :n]
    mask = torch.zeros(mb.mask.shape[0], T, dtype=torch.bool, device=mb.mask.device)  # (B, T)
    mask[:, :n] = mb.mask[:, :n]
    return ModalityBatch(data, mb.present, mask, mb.offsets)


class WindowAlignedModel(nn.Module):
    """Wraps the core model (``self.core``); aligns every modality on the clips' window count."""

    def __init__(self, core: nn.Module) -> None:
        super().__init__()
        self.core = core

    def forward(self, batch: Batch) -> dict[str, Any]:
        T = max(len(m["window_starts"]) for m in batch.meta)
        inputs = {name: align_windows(mb, T) for name, mb in batch.inputs.items()}
        return self.core(Batch(inputs, batch.targets, batch.sample_ids, batch.group_ids, batch.meta))


def build_model(cfg: Any, domain: Any) -> nn.Module:
    """``Domain.build_model``: the core fusion model with one output per configured class."""
    from mmapps.models.build import build_fusion_model

    return WindowAlignedModel(build_fusion_model(cfg, with_classes(domain, data_options(cfg.data.options).classes)))
