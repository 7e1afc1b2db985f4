"""Dataset views that change what a model sees without copying data."""

from __future__ import annotations

from typing import Any, Sequence

from torch.utils.data import Dataset

from mmapps.data.sample import Sample


class WithoutModalities(Dataset):
    """Wraps a dataset of `Sample`s and marks the given modalities absent (missing-modality tests)."""

    def __init__(self, dataset: Dataset, removed: Sequence[str]) -> None:
        self.dataset = dataset
        self.removed = frozenset(removed)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Sample:
        sample = self.dataset[index]
        inputs = {k: (None if k in self.removed else v) for k, v in sample.inputs.items()}
        return Sample(sample.sample_id, sample.group_id, inputs, sample.targets, sample.meta)


class IndexedView(Dataset):
    """The items `indices` of `dataset`, in that order; forwards ``set_epoch`` so augmentation stays keyed on the epoch."""

    def __init__(self, dataset: Dataset, indices: Sequence[int]) -> None:
        self.dataset, self.indices = dataset, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[self.indices[index]]

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
