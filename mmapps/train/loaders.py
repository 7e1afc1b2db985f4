"""DataLoaders of collated `Batch`es: seeded, epoch-tagged training batches; plain evaluation batches."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Sequence

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler, RandomSampler

from mmapps.config import RunConfig
from mmapps.data.sample import collate_samples
from mmapps.domain import Domain, resolve
from mmapps.train.runtime import Runtime
from mmapps.train.sampling import EpochBatchSampler, EpochDataset, resolve_num_workers


class TrainLoader(NamedTuple):
    """The training DataLoader and the batch sampler that selects its epoch and start batch."""

    loader: DataLoader
    batches: EpochBatchSampler


def _loader_options(cfg: RunConfig, domain: Domain, modalities: Sequence[str], runtime: Runtime) -> dict[str, Any]:
    workers = resolve_num_workers(cfg.data.num_workers)
    collate = functools.partial(collate_samples, modality_to_layout={m: domain.modality(m).layout for m in modalities})
    # The loader's own generator draws the worker base seed, so creating an iterator never
    # advances the global torch RNG (which a resumed run restores from its checkpoint).
    return dict(
        collate_fn=collate, num_workers=workers, pin_memory=runtime.device.type == "cuda", persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(cfg.seed),
    )


def make_train_loader(dataset: Dataset, cfg: RunConfig, domain: Domain, modalities: Sequence[str], runtime: Runtime) -> TrainLoader:
    """Shuffled (or the domain's) training batches, each index tagged with its epoch (see `mmapps.train.sampling`)."""
    options = _loader_options(cfg, domain, modalities, runtime)
    inner = resolve(domain.batch_sampler)(dataset, cfg, "train") if domain.batch_sampler is not None else None
    if inner is None:
        if runtime.distributed:
            sampler = DistributedSampler(dataset, num_replicas=runtime.world_size, rank=runtime.rank, shuffle=True, seed=cfg.seed)
        else:
            sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(cfg.seed))
        inner = BatchSampler(sampler, cfg.train.batch_size, drop_last=False)
    batches = EpochBatchSampler(inner, cfg.seed)
    return TrainLoader(DataLoader(EpochDataset(dataset), batch_sampler=batches, **options), batches)


def make_loader(dataset: Dataset, cfg: RunConfig, domain: Domain, modalities: Sequence[str], runtime: Runtime, train: bool, split: str) -> DataLoader:
    """A DataLoader of collated `Batch`es: the training loader with `train`, else in dataset order (sharded under DDP)."""
    if train:
        return make_train_loader(dataset, cfg, domain, modalities, runtime).loader
    options = _loader_options(cfg, domain, modalities, runtime)
    if domain.batch_sampler is not None:
        batch_sampler = resolve(domain.batch_sampler)(dataset, cfg, split)
        if batch_sampler is not None:
            return DataLoader(dataset, batch_sampler=batch_sampler, **options)
    sampler = DistributedSampler(dataset, num_replicas=runtime.world_size, rank=runtime.rank, shuffle=False) if runtime.distributed else None
    return DataLoader(dataset, batch_size=cfg.train.batch_size, sampler=sampler, drop_last=False, **options)
