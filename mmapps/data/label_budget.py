"""A labelled subset of the train (and validation) split: ``data.label_budget=N`` samples, drawn by seed.

The draw is stratified so that the labels are represented: labels are visited from the rarest up
and, while the budget allows, one sample carrying each label not yet covered is taken (in a
seeded random order); the rest of the budget is filled in the same order. A sample's labels are its
positive targets: a multi-label vector's entries > 0.5, a class index, the classes of a detection
target's boxes, any time step's positives of a per-window target (NaN = unlabelled, ignored).
The same (seed, budget) gives the same subset in every arm of a comparison, and a smaller budget's
draw is not required to be nested in a larger one. Samples keep their index in the full split, so
augmentation draws (keyed on the index) are the same as without a budget.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mmapps.data.splits import DatasetSplits
from mmapps.data.views import IndexedView

_STREAM = 0x1ABE1  # separates this draw from every other use of the seed


class LabelledSubset(IndexedView):
    """The samples `indices` of `dataset` (which learns the epoch through ``set_epoch`` as before)."""


def positive_labels(targets: dict[str, Any]) -> frozenset[str]:
    """The ``"<task>:<label index>"`` labels a sample is positive for (see the module docstring)."""
    labels: set[str] = set()
    for task, target in targets.items():
        if isinstance(target, dict):
            values = target.get("labels")
            if isinstance(values, torch.Tensor):
                labels |= {f"{task}:{int(v)}" for v in values.flatten().tolist()}
            continue
        if not isinstance(target, torch.Tensor):
            continue
        if target.dim() == 0 or not target.is_floating_point():
            labels |= {f"{task}:{int(v)}" for v in target.flatten().tolist() if int(v) >= 0}
            continue
        positive = torch.nan_to_num(target.float(), nan=0.0) > 0.5
        if positive.dim() > 1:
            positive = positive.flatten(0, -2).any(0)  # any time step / element
        labels |= {f"{task}:{i}" for i in positive.nonzero().flatten().tolist()}
    return frozenset(labels)


def draw_labelled(dataset: Dataset, budget: int, seed: int) -> list[int]:
    """Indices of `budget` samples of `dataset` (all of them when it holds no more), stratified by label."""
    n = len(dataset)
    if budget >= n:
        return list(range(n))
    order = np.random.default_rng([seed, _STREAM]).permutation(n).tolist()
    labels_of = [positive_labels(dataset[i].targets) for i in range(n)]
    counts = Counter(label for labels in labels_of for label in labels)
    chosen: list[int] = []
    taken: set[int] = set()
    covered: set[str] = set()
    for label in sorted(counts, key=lambda name: (counts[name], name)):
        if len(chosen) >= budget:
            break
        if label in covered:
            continue
        pick = next(i for i in order if label in labels_of[i] and i not in taken)
        chosen.append(pick)
        taken.add(pick)
        covered |= labels_of[pick]
    chosen += [i for i in order if i not in taken][: budget - len(chosen)]
    return sorted(chosen)


def apply_label_budget(splits: DatasetSplits, cfg: Any) -> DatasetSplits:
    """`splits` with the train (and validation) split cut to ``data.label_budget`` (``label_budget_val``)."""
    data = cfg.data
    if data.label_budget is None and data.label_budget_val is None:
        return splits
    seed = cfg.seed if data.label_budget_seed is None else data.label_budget_seed
    train, val, info = splits.train, splits.val, dict(splits.info)
    if data.label_budget is not None:
        indices = draw_labelled(splits.train, data.label_budget, seed)
        train = LabelledSubset(splits.train, indices)
        info["labelled train samples"] = f"{len(indices)} of {len(splits.train)} (label budget, seed {seed})"
    if data.label_budget_val is not None:
        indices = draw_labelled(splits.val, data.label_budget_val, seed + 1) if data.label_budget_val else []
        val = LabelledSubset(splits.val, indices)
        info["labelled validation samples"] = f"{len(indices)} of {len(splits.val)}" + ("" if indices else " (no validation: the last weights are tested)")
    return dataclasses.replace(splits, train=train, val=val, info=info)
