"""The "pairs shuffled across samples" control: a fixed derangement keyed on the seed, across groups, pool only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmapps.data.sample import Sample
from mmapps.errors import ConfigError
from mmapps.pretrain.shuffle import ShuffledPairs, pair_sources


def _groups(sizes):
    return [f"g{g}" for g, n in enumerate(sizes) for _ in range(n)]


@pytest.mark.parametrize("modalities", [2, 3])
def test_every_re_paired_modality_is_a_derangement_across_groups(modalities):
    groups = _groups([1, 3, 2, 2, 1, 3, 1, 2, 2, 3])  # 20 items, largest group 3: 3 * 3 <= 20
    sources = pair_sources(groups, modalities, seed=7)
    assert len(sources) == modalities and np.array_equal(sources[0], np.arange(len(groups)))
    for k in range(1, modalities):
        assert sorted(sources[k].tolist()) == list(range(len(groups))), "a permutation: each sample lends its modality once"
        assert all(sources[k][i] != i for i in range(len(groups))), "no fixed point"
        assert all(groups[sources[k][i]] != groups[i] for i in range(len(groups))), "never from the same group (patient, clip, drive)"
    if modalities == 3:  # the two re-paired modalities never come from the same sample either
        assert all(groups[sources[1][i]] != groups[sources[2][i]] for i in range(len(groups)))


def test_the_arrangement_is_reproducible_and_keyed_on_the_seed():
    groups = _groups([2] * 30)
    a, b, c = pair_sources(groups, 2, 0), pair_sources(groups, 2, 0), pair_sources(groups, 2, 1)
    assert np.array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_small_pools_fall_back_to_a_derangement_over_samples_and_too_small_is_refused():
    groups = ["a", "a", "a", "b"]  # largest group 3: 2 * 3 > 4, groups cannot all be avoided
    sources = pair_sources(groups, 2, 0)[1]
    assert all(sources[i] != i for i in range(4)) and sorted(sources.tolist()) == [0, 1, 2, 3]
    with pytest.raises(ConfigError, match="shuffle_pairs.*1 sample"):
        pair_sources(["a"], 2, 0)


class _Items(torch.utils.data.Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        windows = 3 + i % 3  # clips of different lengths
        return Sample(f"s{i}", f"g{i // 2}", {"video": torch.full((windows, 2), float(i)), "audio": torch.full((windows + 1, 4), float(i)), "note": f"note {i}"},
                      {"y": torch.tensor(float(i))}, {"id": i})


def test_the_view_keeps_the_anchor_and_takes_each_other_modality_from_its_source():
    data = _Items(12)
    view = ShuffledPairs(data, ["video", "audio", "note"], {"video": "padded", "audio": "padded", "note": "text"}, [data[i].group_id for i in range(12)], seed=3)
    for i in range(12):
        item, a, n = view[i], int(view.sources[1][i]), int(view.sources[2][i])
        assert (item.sample_id, item.group_id, item.meta, float(item.targets["y"])) == (f"s{i}", f"g{i // 2}", {"id": i}, float(i))  # the anchor's sample
        assert torch.equal(item.inputs["video"], data[i].inputs["video"])
        assert item.inputs["note"] == f"note {n}" and a != i and n != i and a // 2 != i // 2
        expected = data[a].inputs["audio"][: data[i].inputs["video"].shape[0]]  # windows cut to the anchor's count
        assert torch.equal(item.inputs["audio"], expected)
