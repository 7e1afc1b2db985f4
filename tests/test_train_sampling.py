"""Epoch-tagged, resumable training batches: workers see every epoch, draws are pure functions of
(seed, epoch, index), and a resumed epoch yields exactly the batches not yet trained on."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler

from mmapps.data.rng import sample_rng, sample_torch_generator
from mmapps.train.sampling import EpochBatchSampler, EpochDataset, resolve_num_workers


class Augmented(torch.utils.data.Dataset):
    """Returns (index, epoch seen by the loading process, one augmentation draw)."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        return index, self.epoch, float(sample_rng(self.seed, self.epoch, index).random())


def _loader(workers: int, seed: int = 7) -> tuple[DataLoader, EpochBatchSampler]:
    batches = EpochBatchSampler(BatchSampler(RandomSampler(range(10), generator=torch.Generator()), 3, drop_last=False), seed)
    loader = DataLoader(EpochDataset(Augmented(10, seed)), batch_sampler=batches, num_workers=workers, persistent_workers=workers > 0,
                        collate_fn=lambda items: items, generator=torch.Generator().manual_seed(seed))
    return loader, batches


def _epoch(loader, batches, epoch: int, start: int = 0) -> list:
    batches.set_epoch(epoch, start)
    return [item for batch in loader for item in batch]


def test_persistent_workers_see_each_epoch_and_draw_like_the_main_process():
    loader, batches = _loader(workers=2)
    in_process, batches0 = _loader(workers=0)
    for epoch in range(3):
        items = _epoch(loader, batches, epoch)
        assert sorted(i for i, _, _ in items) == list(range(10)), "every sample once per epoch"
        assert {e for _, e, _ in items} == {epoch}, "the workers' dataset copies learnt the epoch"
        assert items == _epoch(in_process, batches0, epoch), "same order and draws with or without workers"
    first, second = _epoch(in_process, batches0, 1), _epoch(in_process, batches0, 2)
    assert [i for i, _, _ in first] != [i for i, _, _ in second], "shuffled anew per epoch"
    assert {i: d for i, _, d in first} != {i: d for i, _, d in second}, "augmentation drawn anew per epoch"


def test_a_resumed_epoch_yields_the_remaining_batches_only():
    loader, batches = _loader(workers=0)
    whole = _epoch(loader, batches, 4)
    _epoch(loader, batches, 0)  # another epoch in between changes nothing: order is a function of (seed, epoch)
    assert _epoch(loader, batches, 4, start=2) == whole[6:]
    assert len(batches) == 4


def test_sample_rng_is_a_pure_function_with_independent_streams():
    a = sample_rng(3, 1, 5).random(4)
    assert np.array_equal(a, sample_rng(3, 1, 5).random(4))
    assert not np.array_equal(a, sample_rng(3, 1, 5, stream=1).random(4))
    assert not np.array_equal(a, sample_rng(3, 2, 5).random(4)) and not np.array_equal(a, sample_rng(3, 1, 6).random(4))
    assert torch.equal(torch.rand(3, generator=sample_torch_generator(3, 1, 5)), torch.rand(3, generator=sample_torch_generator(3, 1, 5)))
    assert sample_rng(-1, 0, 0).random() == sample_rng(2**64 - 1, 0, 0).random(), "negative seeds are accepted (two's complement)"


def test_num_workers_auto_leaves_one_core_per_process(monkeypatch):
    import os

    cores = len(os.sched_getaffinity(0))
    assert resolve_num_workers(3) == 3
    assert resolve_num_workers("auto") == max(0, cores - 1)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(cores))
    assert resolve_num_workers("auto") == 0
