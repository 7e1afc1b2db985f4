"""Dataset views that change what a model sees without copying data."""

from __future__ import annotations

from typing import Sequence

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
