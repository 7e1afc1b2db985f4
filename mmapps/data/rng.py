"""Per-sample randomness as a pure function of (seed, epoch, sample index).

A dataset that draws its augmentation from a generator it owns gives other draws in every
DataLoader worker process and loses its position when a run is resumed: neither the workers'
state nor a NumPy generator's is in a checkpoint. Deriving each sample's generator from
``SeedSequence([seed, epoch, index, stream])`` makes the draw independent of which worker loads
the sample, of the access order and of any resume, with streams that are statistically
independent (NumPy's SeedSequence hashing), not merely differently offset.

The dataset learns the epoch through ``set_epoch(epoch)``, which the trainer calls in whichever
process loads the sample (see `mmapps.train.sampling`), like ``DistributedSampler.set_epoch``.

Usage::

    class MyDataset:
        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch

        def __getitem__(self, index):
            rng = sample_rng(self.seed, self.epoch, index)
            ...
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

_MASK = (1 << 64) - 1


@runtime_checkable
class EpochAware(Protocol):
    """A dataset whose items depend on the epoch (augmentation); the trainer calls `set_epoch`."""

    def set_epoch(self, epoch: int) -> None: ...


def sample_seed_sequence(seed: int, epoch: int, index: int, stream: int = 0) -> np.random.SeedSequence:
    """The seed sequence of one sample's draws; `stream` separates independent uses for one sample."""
    return np.random.SeedSequence([int(seed) & _MASK, int(epoch) & _MASK, int(index) & _MASK, int(stream) & _MASK])


def sample_rng(seed: int, epoch: int, index: int, stream: int = 0) -> np.random.Generator:
    """A NumPy generator for sample `index` at `epoch` of a run seeded `seed`."""
    return np.random.default_rng(sample_seed_sequence(seed, epoch, index, stream))


def sample_torch_generator(seed: int, epoch: int, index: int, stream: int = 0):
    """The same, as a ``torch.Generator`` (CPU) for code that draws with torch."""
    import torch

    state = sample_seed_sequence(seed, epoch, index, stream).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & ((1 << 63) - 1))
