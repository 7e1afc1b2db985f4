"""The pretraining pool: the train split only, a group-level part of it held out for the reconstruction loss."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from torch.utils.data import Dataset

from mmapps.data.views import IndexedView


class PoolView(IndexedView):
    """The items `indices` of `dataset` and their ``group_ids``; forwards ``set_epoch`` so augmentation stays keyed on the epoch."""

    def __init__(self, dataset: Dataset, indices: Sequence[int], groups: Sequence[str]) -> None:
        super().__init__(dataset, indices)
        self.group_ids = list(groups)


def group_ids(dataset: Dataset) -> list[str]:
    """Each item's group id: the dataset's ``group_ids`` when it has them, else read item by item (one pass)."""
    declared = getattr(dataset, "group_ids", None)
    if declared is not None and not callable(declared) and len(declared) == len(dataset):
        return [str(g) for g in declared]
    return [str(dataset[i].group_id) for i in range(len(dataset))]


def split_pool(dataset: Dataset, fraction: float, seed: int) -> tuple[PoolView, PoolView]:
    """(pool, held-out): whole groups, chosen by a keyed hash of the group id, at least one group each when there are two.

    A group's side depends only on (seed, group id), so adding data never moves an existing group.
    """
    groups = group_ids(dataset)
    score = {g: int.from_bytes(hashlib.sha256(f"{seed}:{g}".encode()).digest()[:8], "little") / 2**64 for g in set(groups)}
    held = {g for g, s in score.items() if s < fraction}
    if not held and len(score) >= 2:
        held = {min(score, key=score.get)}
    if len(held) == len(score) and len(score) >= 2:
        held.discard(max(score, key=score.get))
    pool = [i for i, g in enumerate(groups) if g not in held]
    out = [i for i, g in enumerate(groups) if g in held]
    return PoolView(dataset, pool, [groups[i] for i in pool]), PoolView(dataset, out, [groups[i] for i in out])
