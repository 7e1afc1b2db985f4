"""One pass over the validation split with both models: parity, metrics, thresholds, score distributions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mmapps.export.parity import ParityReport, compare_batches
from mmapps.export.scores import (
    choose_thresholds,
    decisions,
    record_scores,
    score_distribution,
)


@dataclass
class ValidationSummary:
    """What the sidecar and the model card report from validation."""

    parity: ParityReport
    metrics_torch: dict[str, Any]
    metrics_onnx: dict[str, Any]
    thresholds: dict[str, dict[str, float]]
    distributions: dict[str, Any]


def _records(domain: Any, outputs: dict[str, Any], batch: Any, into: dict[str, list]) -> None:
    from mmapps.domain import resolve
    from mmapps.evaluation.records import PredictionRecord, _to_plain

    for task in domain.tasks:
        predictions = resolve(task.postprocess)(outputs[task.name], batch)
        targets = batch.targets.get(task.name)
        for i, prediction in enumerate(predictions):
            target = _to_plain(targets[i]) if targets is not None else None
            into.setdefault(task.name, []).append(PredictionRecord(batch.sample_ids[i], batch.group_ids[i], task.name, prediction, target, batch.meta[i]))


@torch.no_grad()
def validation_summary(loaded: Any, onnx_model: Any) -> ValidationSummary:
    """Run PyTorch and onnxruntime over the validation split and summarise (see `ValidationSummary`)."""
    from mmapps.train.trainer import compute_metrics, primary_key

    domain, cfg, adapter = loaded.domain, loaded.cfg, loaded.adapter
    torch_records: dict[str, list] = {}
    onnx_records: dict[str, list] = {}
    pairs = []
    for batch in loaded.loader("val"):
        ref = adapter.reference(loaded.model, batch)
        got = onnx_model.run(onnx_model.runtime.feeds(batch))
        pairs.append((got, ref, list(batch.sample_ids)))
        _records(domain, onnx_model.runtime.model_outputs(ref, batch), batch, torch_records)
        _records(domain, onnx_model.runtime.model_outputs(got, batch), batch, onnx_records)
    parity = compare_batches(pairs, "val")
    for records in (torch_records, onnx_records):
        for rows in records.values():
            rows.sort(key=lambda r: r.sample_id)
    metrics_torch = compute_metrics(domain, torch_records, cfg, torch_records)
    metrics_onnx = compute_metrics(domain, onnx_records, cfg, onnx_records)
    key = primary_key(domain)
    parity.metric, parity.metric_torch, parity.metric_onnx = key, _float(metrics_torch.get(key)), _float(metrics_onnx.get(key))
    thresholds, distributions = {}, {}
    prefix = lambda t: f"{t.name}/" if len(domain.tasks) > 1 else ""
    for task in domain.tasks:
        rows = torch_records.get(task.name, [])
        thresholds[task.name] = choose_thresholds(task, rows, metrics_torch, prefix(task))
        distributions[task.name] = score_distribution(task, rows)
        ref_decisions = decisions(task, record_scores(rows), thresholds[task.name])
        got_decisions = decisions(task, record_scores(onnx_records.get(task.name, [])), thresholds[task.name])
        output = next((o for o in adapter.outputs if o.task == task.name), None)
        if ref_decisions is not None and output is not None and output.name in parity.outputs:
            flips = ref_decisions != got_decisions
            entry = parity.outputs[output.name]
            entry.flipped, entry.decisions = int(flips.sum()), int(ref_decisions.size)
            if entry.flipped and task.head == "multilabel":  # how close to its threshold the flipped score was
                limits = np.asarray([thresholds[task.name][label] for label in task.labels])
                entry.flip_margin = float(np.abs(record_scores(rows) - limits)[flips].max())
    return ValidationSummary(parity, _plain(metrics_torch), _plain(metrics_onnx), thresholds, distributions)


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float, np.floating)) and np.isfinite(value) else None


def _plain(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: (_float(v) if isinstance(v, (int, float, np.floating)) else v) for k, v in metrics.items() if isinstance(v, (int, float, np.floating, str))}
