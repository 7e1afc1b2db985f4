"""Training batches that carry their epoch and can start at any batch of an epoch.

`EpochBatchSampler` runs in the main process: it reseeds the inner sampler per epoch (the
shuffling is a pure function of (seed, epoch)), skips the batches a resumed run has already
trained on without loading them, and tags every index with its epoch. `EpochDataset` runs
wherever the sample is loaded (a DataLoader worker included, persistent or not) and calls the
dataset's ``set_epoch`` from that tag, so augmentation drawn from (seed, epoch, index) (see
`mmapps.data.rng`) is the same in every worker and after every resume.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Iterator, NamedTuple

from torch.utils.data import Dataset, DistributedSampler, RandomSampler, Sampler

from mmapps.data.rng import EpochAware


class EpochItem(NamedTuple):
    """One sample index of one epoch."""

    epoch: int
    index: int


class EpochDataset(Dataset):
    """Wraps a dataset indexed by `EpochItem`: sets the wrapped dataset's epoch, then loads the item."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self._aware = isinstance(dataset, EpochAware)
        self._epoch: int | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: EpochItem) -> Any:
        epoch, index = item
        if self._aware and epoch != self._epoch:
            self.dataset.set_epoch(epoch)
            self._epoch = epoch
        return self.dataset[index]


class EpochBatchSampler(Sampler):
    """Batches of `EpochItem` from an inner batch sampler, reseeded per epoch, from a start batch.

    Args:
        batch_sampler: yields lists of indices (a ``BatchSampler`` over a random or distributed
            sampler, or a domain's own batch sampler, which may have ``set_epoch``).
        seed: the run seed.
    """

    def __init__(self, batch_sampler: Iterable[list[int]], seed: int) -> None:
        self.batch_sampler, self.seed = batch_sampler, seed
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch to iterate and the first batch to yield (a resumed run skips the others)."""
        self.epoch, self.start_batch = epoch, start_batch
        if hasattr(self.batch_sampler, "set_epoch"):
            self.batch_sampler.set_epoch(epoch)
        inner = getattr(self.batch_sampler, "sampler", None)
        if isinstance(inner, DistributedSampler):
            inner.set_epoch(epoch)
        elif isinstance(inner, RandomSampler) and inner.generator is not None:
            inner.generator.manual_seed(self.seed * 100003 + epoch)

    def __iter__(self) -> Iterator[list[EpochItem]]:
        for number, batch in enumerate(self.batch_sampler):
            if number >= self.start_batch:
                yield [EpochItem(self.epoch, int(i)) for i in batch]

    def __len__(self) -> int:
        """Batches in a whole epoch (a resumed epoch yields ``len - start_batch`` of them)."""
        return len(self.batch_sampler)


def resolve_num_workers(value: int | str) -> int:
    """``data.num_workers``: an int, or ``"auto"`` = usable cores / local processes - 1 (at least 0).

    Under torchrun each process of a node gets its share of the cores, so ``auto`` never
    oversubscribes the machine.
    """
    if value != "auto":
        return int(value)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(0, cores // local - 1)
