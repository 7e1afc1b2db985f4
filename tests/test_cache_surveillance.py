"""The surveillance domain on the core cache: clip features decoded once, poisoned entries rebuilt, settings keyed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmapps.data.cache_secret import KEY_ENV
from mmapps.workflows.resolve import resolve_config
from mmapps_domains.surveillance import domain
from mmapps_domains.surveillance.dataset import build_datasets
from mmapps_domains.surveillance.demo import write_demo_data


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_data(tmp_path_factory.mktemp("demo"), n=3, seed=3)


@pytest.fixture(autouse=True)
def _key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, str(tmp_path / "cache.key"))


def _videos(splits) -> list[torch.Tensor]:
    return [d[i].inputs["video"] for d in (splits.train, splits.val, splits.test) for i in range(len(d))]


def test_clip_features_cached_poison_rebuilt_and_settings_keyed(demo: Path, tmp_path: Path) -> None:
    root = tmp_path / "c"
    cfg = resolve_config(domain, "smoke", overrides=[f"data.root={demo}", f"cache.dir={root}"])
    first = build_datasets(cfg)
    assert "3 miss(es)" in first.info["cache"] and len(list((root / "surveillance").rglob("*.mmc"))) == 3
    reference = _videos(first)
    warm = build_datasets(cfg)
    assert "3 hit(s), 0 miss(es)" in warm.info["cache"]
    for entry in root.rglob("*.mmc"):
        data = bytearray(entry.read_bytes())
        data[-3] ^= 0x01  # one bit of the last array
        entry.write_bytes(bytes(data))
    rebuilt = build_datasets(cfg)
    assert "3 entr(y/ies) refused and rebuilt" in rebuilt.info["cache"]
    assert all(torch.equal(a, b) for a, b in zip(reference, _videos(rebuilt)))
    other = resolve_config(domain, "smoke", overrides=[f"data.root={demo}", f"cache.dir={root}", "data.options.window_s=0.5"])
    assert "0 hit(s)" in build_datasets(other).info["cache"]  # other window settings: other entries
