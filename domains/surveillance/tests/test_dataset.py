"""Demo data -> datasets: sample layout, caching, weak regime, and bad inputs counted or fatal."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mmapps.data import collate_samples
from mmapps.errors import DataError
from mmapps.workflows.resolve import resolve_config
from mmapps_domains.surveillance import domain
from mmapps_domains.surveillance.dataset import build_datasets
from mmapps_domains.surveillance.demo import write_demo_data


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_demo_data(tmp_path_factory.mktemp("demo"), n=5, seed=7)
    clip = root / "clips" / "clip0001.mp4"
    clip.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])  # truncated
    with open(root / "manifest.jsonl", "a") as handle:
        handle.write(json.dumps({"id": "bad", "clip": "clips/clip0000.mp4", "labels": ["fight"], "segments": [[4, 2, "fight"]]}) + "\n")
    chat = json.loads((root / "manifest.jsonl").read_text().splitlines()[2])["chat"]
    with open(root / chat, "a") as handle:
        handle.write("{broken\n")
    return root


def test_samples_cache_and_issues(demo_root: Path, tmp_path: Path) -> None:
    cfg = resolve_config(domain, "smoke", overrides=[f"data.root={demo_root}", f"data.cache_dir={tmp_path / 'cache'}"])
    splits = build_datasets(cfg)
    assert len(splits.issues) == 3, splits.issues.issues
    assert any("clip0001.mp4" in i.reason for i in splits.issues.issues)
    assert any("end < start" in i.reason for i in splits.issues.issues)
    assert any(i.path.rsplit(":", 1)[-1].isdigit() and i.reason.startswith("chat line") for i in splits.issues.issues)
    assert len(splits.train) + len(splits.val) + len(splits.test) == 4
    sample = splits.train[0]
    assert sample.inputs["video"].shape == (10, 4, 2, 32, 32) and sample.inputs["video"].max() <= 1.0
    assert sample.inputs["chat"].shape[1] == 385 and sample.targets["events"].shape == (10, 3)
    assert sample.meta["window_starts"][:3] == [0.0, 1.0, 2.0] and sample.meta["fps"] == 10.0
    assert len(list((tmp_path / "cache" / "surveillance").glob("*.npz"))) == 4
    again = build_datasets(cfg).train[0]  # from the cache: same numbers
    torch.testing.assert_close(again.inputs["video"], sample.inputs["video"])
    layouts = {m.name: m.layout for m in domain.modalities}
    batch = collate_samples([splits.train[i] for i in range(len(splits.train))], layouts)
    assert batch.inputs["video"].data.shape[:2] == (len(splits.train), 10)
    assert not batch.inputs["features"].present.any()  # absent modality collates as absent


def test_weak_regime_hides_train_windows(demo_root: Path) -> None:
    cfg = resolve_config(domain, "smoke", overrides=[f"data.root={demo_root}", "data.options.regime=weak"])
    splits = build_datasets(cfg)
    assert torch.isnan(splits.train[0].targets["events"]).all()
    assert not torch.isnan(splits.test[0].targets["events"]).any()


def test_on_error_stop_names_the_file(demo_root: Path) -> None:
    cfg = resolve_config(domain, "smoke", overrides=[f"data.root={demo_root}", "data.on_error=stop"])
    with pytest.raises(DataError, match="manifest.jsonl:6|clip0001|chat"):
        build_datasets(cfg)


def test_demo_modalities_see_different_events(tmp_path: Path) -> None:
    root = write_demo_data(tmp_path, n=30, seed=0)
    rows = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]
    seen = [set(p) for r in rows for p in r["perceived_by"]]
    assert seen and all(s for s in seen)
    for m in ("video", "audio", "chat"):
        assert any(m not in s for s in seen) and any(m in s for s in seen)
    assert any(not r["labels"] for r in rows)
    assert np.mean([r["clip"].endswith(".mp4") for r in rows]) == 1.0


def test_motion_channel_is_the_frame_difference_inside_each_window() -> None:
    from mmapps_domains.surveillance.dataset import video_tensor

    frames = np.zeros((2, 3, 1, 2, 2), np.uint8)
    frames[0, 1] = 51
    frames[1, 0] = 255  # a change across the window boundary is not motion of window 1
    video = video_tensor(frames, motion_channel=True)
    assert video.shape == (2, 3, 2, 2, 2)
    np.testing.assert_allclose(video[0, :, 1, 0, 0].numpy(), [0.0, 0.2, 0.2])
    np.testing.assert_allclose(video[1, :, 1, 0, 0].numpy(), [0.0, 1.0, 0.0])
    assert video_tensor(frames, motion_channel=False).shape == (2, 3, 1, 2, 2)
