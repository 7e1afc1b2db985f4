"""data.label_budget: a seeded, stratified labelled subset (every label with positives represented while the budget allows)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmapps.data import Sample
from mmapps.data.label_budget import LabelledSubset, draw_labelled, positive_labels


class Targets(torch.utils.data.Dataset):
    def __init__(self, targets: list[dict]) -> None:
        self.targets, self.epochs = targets, []

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> Sample:
        return Sample(f"s{i}", f"g{i}", {}, self.targets[i])

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)


def multilabel(n: int = 200, rare_every: int = 50, seed: int = 0) -> Targets:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        y = (rng.random(4) < [0.5, 0.2, 0.0, 0.0]).astype(np.float32)
        y[2] = float(i % rare_every == 7)  # 4 positives in 200
        y[3] = math.nan if i % 3 == 0 else 0.0  # never positive (NaN = unlabelled)
        rows.append({"y": torch.from_numpy(y)})
    return Targets(rows)


def test_positive_labels_of_each_target_kind():
    assert positive_labels({"y": torch.tensor([1.0, 0.0, float("nan"), 0.9])}) == {"y:0", "y:3"}
    assert positive_labels({"c": torch.tensor(2)}) == {"c:2"}
    assert positive_labels({"events": torch.tensor([[0.0, float("nan")], [1.0, 0.0]])}) == {"events:0"}  # any window
    assert positive_labels({"objects": {"boxes": torch.zeros(2, 7), "labels": torch.tensor([1, 1]), "kitti": {}}}) == {"objects:1"}


def test_small_budget_contains_every_label_with_positives_and_is_seeded():
    data = multilabel()
    picked = draw_labelled(data, 5, seed=0)
    assert len(picked) == len(set(picked)) == 5
    labels = set().union(*(positive_labels(data[i].targets) for i in picked))
    assert {"y:0", "y:1", "y:2"} <= labels  # the rare finding (4 of 200) is in; a random 5 of 200 misses it 90 % of the time
    assert draw_labelled(data, 5, seed=0) == picked
    assert draw_labelled(data, 5, seed=1) != picked
    assert draw_labelled(data, 25, seed=0) != draw_labelled(data, 25, seed=3)
    assert draw_labelled(data, 500, seed=0) == list(range(200))


def test_labelled_subset_keeps_indices_and_passes_the_epoch():
    data = multilabel(20)
    view = LabelledSubset(data, [3, 9])
    assert len(view) == 2 and view[1].sample_id == "s9"
    view.set_epoch(4)
    assert data.epochs == [4]


@pytest.mark.parametrize("budget", [1, 2, 3])
def test_budget_smaller_than_the_labels_is_honoured(budget):
    assert len(draw_labelled(multilabel(), budget, seed=0)) == budget
