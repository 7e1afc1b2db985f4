"""The medical domain on the core cache: the indexing decode fills it, epochs and later runs decode nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmapps.config import RunConfig
from mmapps.data.cache_secret import KEY_ENV
from mmapps_domains.medical.dataset import build_datasets
from mmapps_domains.medical.demo import write_demo_data


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_data(tmp_path_factory.mktemp("demo"), n=8, seed=1)


@pytest.fixture(autouse=True)
def _key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, str(tmp_path / "cache.key"))


def _cfg(root: Path, cache: dict, **options) -> RunConfig:
    return RunConfig(domain="medical", data={"root": root, "options": {"image_size": 32, "augment": False, **options}}, cache=cache)


def _images(dataset) -> list[torch.Tensor]:
    return [dataset[i].inputs["image"] for i in range(len(dataset))]


def _n_images(splits) -> int:
    return sum(len(s.image_paths) for d in (splits.train, splits.val, splits.test) for s in d.studies)


def test_indexing_decode_fills_the_cache_and_epochs_reuse_it(demo: Path, tmp_path: Path) -> None:
    cfg = _cfg(demo, {"dir": tmp_path / "c"})
    splits = build_datasets(cfg)
    stats = splits.train.load.cache.stats
    decoded = stats.misses
    assert decoded >= _n_images(splits) and stats.hits == 0  # validate_images decoded every image once
    assert len(list((tmp_path / "c" / "medical").rglob("*.mmc"))) == decoded
    epoch1 = _images(splits.train) + _images(splits.test)
    assert stats.misses == decoded and stats.hits == sum(len(s.image_paths) for d in (splits.train, splits.test) for s in d.studies)
    assert "miss(es)" in splits.info["cache"]
    later = build_datasets(cfg)  # a new run: nothing decoded, same tensors
    assert later.train.load.cache.stats.misses == 0
    assert all(torch.equal(a, b) for a, b in zip(epoch1, _images(later.train) + _images(later.test)))
    uncached = build_datasets(_cfg(demo, {"enabled": False}))
    assert uncached.train.load.cache is None and uncached.info["cache"].startswith("off")
    assert all(torch.equal(a, b) for a, b in zip(epoch1, _images(uncached.train) + _images(uncached.test)))


def test_validation_off_fills_the_cache_in_epoch_one(demo: Path, tmp_path: Path) -> None:
    splits = build_datasets(_cfg(demo, {"dir": tmp_path / "c"}, validate_images=False))
    stats = splits.train.load.cache.stats
    assert stats.misses == 0
    _images(splits.train)
    first = stats.misses
    _images(splits.train)
    assert first > 0 and stats.misses == first and stats.hits == first


def test_options_that_change_the_output_miss_and_a_poisoned_entry_is_rebuilt(demo: Path, tmp_path: Path) -> None:
    root = tmp_path / "c"
    small = build_datasets(_cfg(demo, {"dir": root}))
    reference = _images(small.test)
    larger = build_datasets(_cfg(demo, {"dir": root}, image_size=48))
    assert larger.train.load.cache.stats.hits == 0 and larger.test[0].inputs["image"].shape[-1] == 48
    for entry in root.rglob("*.mmc"):  # poison every entry: flip one byte of pixel data
        data = bytearray(entry.read_bytes())
        data[-5] ^= 0xFF
        entry.write_bytes(bytes(data))
    again = build_datasets(_cfg(demo, {"dir": root}))
    stats = again.train.load.cache.stats
    assert stats.refused == stats.misses > 0 and "refused and rebuilt" in again.info["cache"]
    assert all(torch.equal(a, b) for a, b in zip(reference, _images(again.test)))
