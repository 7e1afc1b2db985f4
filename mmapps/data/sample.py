"""The sample and batch contract every domain dataset produces and every model consumes.

A dataset yields `Sample`s; `collate_samples` turns a list of them into a `Batch`.

Per modality, a sample holds one value or `None` when the modality is absent for that sample.
How values are batched is the modality's *layout* (declared on the domain's `ModalitySpec`):

- ``"fixed"``:  a tensor of the same shape in every sample -> stacked to ``(B, ...)``.
- ``"padded"``: a tensor ``(E_i, ...)`` whose first axis varies (images of a study, frames,
  audio samples, time windows) -> ``(B, E, ...)`` zero-padded, with an element mask ``(B, E)``.
- ``"packed"``: a tensor ``(N_i, F)`` (points of a cloud) -> concatenated ``(sum N_i, F)`` with
  ``offsets`` ``(B + 1,)`` so that sample ``b`` owns rows ``offsets[b]:offsets[b + 1]``.
- ``"text"``:   a ``str`` (or a list of ``str``, one per element) -> kept as Python lists; the
  text encoder tokenises, so the tokenizer always matches the model.

Every modality batch also carries ``present`` ``(B,)``: False where the sample had ``None``.
When a modality is absent from *every* sample of a batch (e.g. removed at test time), its
``data`` is None: models must not run that encoder (the core `FusionModel` substitutes a fully
masked output).
Absent samples are filled with zeros (or ``""``) only so shapes line up; fusion modules must
use ``present`` so an absent modality contributes nothing.

Targets: per task, a tensor per sample (stacked when shapes agree) or any object (kept as a list,
e.g. ragged box lists). Float targets use NaN for "ignore this label" (masked from loss and metrics).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import torch
from torch import Tensor

Layout = Literal["fixed", "padded", "packed", "text"]


@dataclass
class Sample:
    """One training/evaluation example.

    Args:
        sample_id: unique, stable id (study id, frame id, clip id); never a patient identifier.
        group_id: the unit that must not be split or that bootstrap resamples by (patient, clip, drive).
        inputs: modality name -> value, or None when absent.
        targets: task name -> target (tensor or ragged object).
        meta: per-sample metadata (calibration matrices, timestamps, view, sex, age...).
    """

    sample_id: str
    group_id: str
    inputs: dict[str, Any]
    targets: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModalityBatch:
    """One modality of a batch.

    Attributes:
        data: ``(B, ...)`` for fixed, ``(B, E, ...)`` for padded, ``(sum N, F)`` for packed,
            ``list[str]`` (or ``list[list[str]]``) for text.
        present: ``(B,)`` bool, False where the modality is absent for that sample.
        mask: ``(B, E)`` bool element mask (padded layout only).
        offsets: ``(B + 1,)`` int64 row offsets (packed layout only).
    """

    data: Any
    present: Tensor
    mask: Tensor | None = None
    offsets: Tensor | None = None

    def to(self, device: torch.device | str) -> "ModalityBatch":
        move = (lambda t: t.to(device, non_blocking=True) if isinstance(t, Tensor) else t)
        return ModalityBatch(move(self.data), move(self.present), move(self.mask), move(self.offsets))

    def select(self, keep: Tensor) -> "ModalityBatch":
        """Return a copy whose ``present`` is ANDed with ``keep`` (B,), e.g. for modality dropout."""
        return ModalityBatch(self.data, self.present & keep.to(self.present.device), self.mask, self.offsets)


@dataclass
class Batch:
    """A collated batch: inputs by modality, targets by task, and per-sample bookkeeping."""

    inputs: dict[str, ModalityBatch]
    targets: dict[str, Any]
    sample_ids: list[str]
    group_ids: list[str]
    meta: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.sample_ids)

    def to(self, device: torch.device | str) -> "Batch":
        targets = {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in self.targets.items()}
        inputs = {k: v.to(device) for k, v in self.inputs.items()}
        return Batch(inputs, targets, self.sample_ids, self.group_ids, self.meta)


def collate_samples(samples: Sequence[Sample], modality_to_layout: dict[str, Layout]) -> Batch:
    """Collate samples into a `Batch`; every modality in `modality_to_layout` appears, present or not."""
    inputs = {
        name: _collate_modality([s.inputs.get(name) for s in samples], layout, name)
        for name, layout in sorted(modality_to_layout.items())
    }
    task_names = sorted({task for s in samples for task in s.targets})
    targets = {task: _collate_target([s.targets.get(task) for s in samples]) for task in task_names}
    return Batch(
        inputs=inputs,
        targets=targets,
        sample_ids=[s.sample_id for s in samples],
        group_ids=[s.group_id for s in samples],
        meta=[s.meta for s in samples],
    )


def input_present(value: Any, layout: Layout) -> bool:
    """Whether one sample's input counts as present, as `collate_samples` decides it.

    Absent is None, and for a ``padded`` modality also zero elements (a zero-length tensor is how a
    reader marks a missing sequence while keeping its element shape).
    """
    if value is None:
        return False
    return layout != "padded" or torch.as_tensor(value).shape[0] > 0


def _collate_modality(values: list[Any], layout: Layout, name: str) -> ModalityBatch:
    present = torch.tensor([v is not None for v in values], dtype=torch.bool)
    if layout == "text":
        return ModalityBatch(data=[v if v is not None else "" for v in values], present=present)
    real = [torch.as_tensor(v) for v in values if v is not None]
    if not real:
        return ModalityBatch(data=None, present=present)
    example = real[0]
    if layout == "fixed":
        filled = [torch.as_tensor(v) if v is not None else torch.zeros_like(example) for v in values]
        return ModalityBatch(data=torch.stack(filled), present=present)
    if layout == "padded":
        return _collate_padded(values, present, example)
    if layout == "packed":
        rows = [torch.as_tensor(v) if v is not None else example.new_zeros((0,) + example.shape[1:]) for v in values]
        counts = torch.tensor([r.shape[0] for r in rows], dtype=torch.long)
        offsets = torch.zeros(len(rows) + 1, dtype=torch.long)
        offsets[1:] = torch.cumsum(counts, 0)
        return ModalityBatch(data=torch.cat(rows), present=present, offsets=offsets)
    raise ValueError(f"modality {name!r}: unknown layout {layout!r}; expected fixed, padded, packed or text")


def _collate_padded(values: list[Any], present: Tensor, example: Tensor) -> ModalityBatch:
    lengths = [torch.as_tensor(v).shape[0] if v is not None else 0 for v in values]
    max_len = max(max(lengths), 1)
    data = example.new_zeros((len(values), max_len) + tuple(example.shape[1:]))  # (B, E, ...)
    mask = torch.zeros(len(values), max_len, dtype=torch.bool)  # (B, E)
    for b, (v, n) in enumerate(zip(values, lengths)):
        if n:
            data[b, :n] = torch.as_tensor(v)
            mask[b, :n] = True
    return ModalityBatch(data=data, present=present & mask.any(1), mask=mask)


def _collate_target(values: list[Any]) -> Any:
    if all(isinstance(v, Tensor) for v in values) and len({tuple(v.shape) for v in values}) == 1:
        return torch.stack(values)
    return values
