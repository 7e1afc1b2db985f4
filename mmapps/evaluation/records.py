"""Predictions as records keyed by sample id, gathered across processes without sampler padding."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from mmapps.domain import Domain, resolve
from mmapps.train.runtime import Runtime


@dataclass
class PredictionRecord:
    """One sample's prediction for one task.

    Attributes:
        sample_id, group_id: as in `mmapps.data.Sample`.
        task: task name.
        prediction: JSON-able dict from the task's ``postprocess`` (scores, boxes, segments...).
        target: the sample's target for the task (tensor converted to a list, or ragged object).
        meta: the sample's metadata (never patient identifiers).
    """

    sample_id: str
    group_id: str
    task: str
    prediction: dict[str, Any]
    target: Any = None
    meta: dict[str, Any] = field(default_factory=dict)


def _to_plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().float().cpu().tolist() if value.is_floating_point() else value.detach().cpu().tolist()
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


@torch.no_grad()
def predict_records(model: nn.Module, loader: DataLoader, domain: Domain, runtime: Runtime, tasks: Iterable[str] | None = None) -> dict[str, list[PredictionRecord]]:
    """Run the model over a loader; return task -> records sorted by sample id (all ranks merged)."""
    model.eval()
    task_specs = [t for t in domain.tasks if tasks is None or t.name in tasks]
    postprocess = {t.name: resolve(t.postprocess) for t in task_specs}
    records: dict[str, list[PredictionRecord]] = {t.name: [] for t in task_specs}
    for batch in loader:
        batch = batch.to(runtime.device)
        with runtime.autocast():
            outputs = model(batch)
        for spec in task_specs:
            predictions = postprocess[spec.name](outputs[spec.name], batch)
            targets = batch.targets.get(spec.name)
            for i, prediction in enumerate(predictions):
                target = targets[i] if targets is not None else None
                records[spec.name].append(PredictionRecord(batch.sample_ids[i], batch.group_ids[i], spec.name, prediction, _to_plain(target), batch.meta[i]))
    return {task: gather_records(rs, runtime) for task, rs in records.items()}


def gather_records(records: list[PredictionRecord], runtime: Runtime) -> list[PredictionRecord]:
    """All-gather records from every rank and keep one per sample id (DistributedSampler pads by repeating samples)."""
    if runtime.distributed:
        gathered: list[list[PredictionRecord] | None] = [None] * runtime.world_size
        dist.all_gather_object(gathered, records)
        records = [r for part in gathered for r in (part or [])]
    unique = {r.sample_id: r for r in records}
    return [unique[k] for k in sorted(unique)]
