"""The "pairs shuffled across samples" control: every sample's modalities re-paired with other samples'.

With ``pretrain.shuffle_pairs=true`` the pool (never the held-out set) is wrapped in `ShuffledPairs`:
item i keeps its first modality (the anchor: the domain's first modality of the run), its sample
id, group, targets and metadata, and takes modality k >= 1 from item ``sources[k][i]``. The
sources come from one fixed arrangement keyed on the seed (`pair_sources`):

- the items are ordered by group (groups in a seeded random order, the items of a group together,
  in a seeded order), and modality k of the item at position j comes from position
  ``(j + k * s) mod N``, where s is the largest group's size;
- so each ``sources[k]`` is a derangement (no item keeps its own modality k), and, when
  ``M * s <= N`` for M modalities, every source lies in another group than the item and than
  every other modality's source: no two modalities of a training sample come from the same
  sample (nor the same patient, clip or drive). Smaller pools fall back to ``s = 1`` (a
  derangement over items, groups ignored).

Cross-modal objectives (reconstruction from the other modalities, the contrastive term) then
see no true pair, while each modality's own content is unchanged: what the pretraining learns
from pairing is what the control takes away. A padded value re-paired onto a padded anchor is cut
to the anchor's element count (time windows stay aligned; a shorter one is padded by the collate).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mmapps.data.sample import Sample
from mmapps.errors import ConfigError

SHUFFLE_STREAM = 0x5F1E  # keys the arrangement apart from every other use of the seed


def pair_sources(groups: Sequence[str], modalities: int, seed: int) -> list[np.ndarray]:
    """Per modality k (0 = the anchor, the identity), the item each item takes modality k from.

    Raises:
        ConfigError: fewer items than modalities (no derangement exists).
    """
    n = len(groups)
    if modalities < 2:
        return [np.arange(n)]
    if n < modalities:
        raise ConfigError(f"pretrain.shuffle_pairs: the pool has {n} sample(s), fewer than its {modalities} modalities; shuffling pairs needs at least {modalities}")
    rng = np.random.default_rng([seed, SHUFFLE_STREAM])
    by_group: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(str(g), []).append(i)
    names = sorted(by_group)
    order = np.array([i for gi in rng.permutation(len(names)) for i in rng.permutation(by_group[names[gi]])], dtype=np.int64)
    largest = max(len(v) for v in by_group.values())
    step = largest if modalities * largest <= n else 1
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    return [order[(position + k * step) % n] for k in range(modalities)]


class ShuffledPairs(Dataset):
    """`dataset` with modality k >= 1 of item i read from item ``sources[k][i]`` (see the module docstring).

    Args:
        dataset: a dataset of `Sample`s (the pretraining pool).
        modalities: the run's modalities; the first is the anchor.
        layouts: modality -> layout (``padded`` values are cut to a padded anchor's element count).
        groups: each item's group id.
        seed: keys the arrangement.
    """

    def __init__(self, dataset: Dataset, modalities: Sequence[str], layouts: dict[str, str], groups: Sequence[str], seed: int) -> None:
        self.dataset, self.modalities, self.layouts = dataset, list(modalities), dict(layouts)
        self.sources = pair_sources(groups, len(self.modalities), seed)
        self.group_ids = [str(g) for g in groups]

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Sample:
        anchor = self.dataset[index]
        inputs = dict(anchor.inputs)
        first = self.modalities[0]
        for k, m in enumerate(self.modalities[1:], start=1):
            value = self.dataset[int(self.sources[k][index])].inputs.get(m)
            inputs[m] = self._aligned(value, anchor.inputs.get(first), m, first)
        return Sample(anchor.sample_id, anchor.group_id, inputs, anchor.targets, anchor.meta)

    def _aligned(self, value: Any, anchor: Any, m: str, first: str) -> Any:
        padded = self.layouts.get(m) == "padded" and self.layouts.get(first) == "padded"
        if padded and isinstance(value, torch.Tensor) and isinstance(anchor, torch.Tensor) and 0 < anchor.shape[0] < value.shape[0]:
            return value[: anchor.shape[0]]
        return value

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
