"""Every input the manifest names is used or counted with its reason; bad annotation values give clean issues.

Data written here with PyAV / soundfile: clips sharing one file, NaN / inf / negative / reversed
segment times (as Python's json writes them), segments past the clip's end, a chat log without
one usable line, missing chat and audio files, a duplicate id, a truncated clip.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from mmapps_domains.surveillance import domain
from mmapps_domains.surveillance.dataset import build_datasets
from mmapps_domains.surveillance.encode import write_clip

from mmapps.errors import DataError
from mmapps.workflows.resolve import resolve_config

SR = 8000


def _frames(n: int) -> np.ndarray:
    return np.stack([np.full((32, 32, 3), (15 * i) % 250, np.uint8) for i in range(n)])


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lost")
    t = np.arange(2 * SR) / SR
    write_clip(root / "a.mp4", _frames(16), 8, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), SR)  # 2 s
    write_clip(root / "silent.mp4", _frames(16), 8, None)
    cut = root / "cut.mp4"
    cut.write_bytes((root / "a.mp4").read_bytes()[: (root / "a.mp4").stat().st_size // 2])
    (root / "good.jsonl").write_text(json.dumps({"t": 0.5, "user": "op", "text": "fight at the gate"}) + "\n")
    (root / "allbad.jsonl").write_text("{oops\n" + json.dumps({"t": float("nan"), "text": "x"}) + "\n")
    soundfile.write(str(root / "mic.wav"), np.zeros(2 * SR, np.float32), SR)
    rows = [
        {"id": "ok", "clip": "a.mp4", "segments": [[0.5, 1.5, "fight"]], "chat": "good.jsonl", "split": "train"},
        {"id": "nan", "clip": "a.mp4", "segments": [[float("nan"), 1.0, "fight"]]},
        {"id": "inf", "clip": "a.mp4", "segments": [[0.0, float("inf"), "fight"]]},
        {"id": "neg", "clip": "a.mp4", "segments": [[-1.0, 1.0, "fight"]]},
        {"id": "rev", "clip": "a.mp4", "segments": [[1.5, 1.0, "fight"]]},
        {"id": "text", "clip": "a.mp4", "segments": [["soon", 1.0, "fight"]]},
        {"id": "beyond", "clip": "a.mp4", "segments": [[5.0, 6.0, "fight"]]},
        {"id": "edge", "clip": "a.mp4", "segments": [[1.0, 2.1, "fight"]], "split": "test"},  # within 2 frames + 1 %
        {"id": "badchat", "clip": "a.mp4", "labels": [], "chat": "allbad.jsonl", "split": "train"},
        {"id": "nochat", "clip": "a.mp4", "labels": [], "chat": "missing.jsonl", "split": "val"},
        {"id": "noaudio", "clip": "a.mp4", "labels": [], "audio": "missing.wav", "split": "train"},
        {"id": "ok", "clip": "a.mp4", "labels": []},
        {"id": "trunc", "clip": "cut.mp4", "labels": []},
        {"id": "silent", "clip": "silent.mp4", "labels": [], "audio": "mic.wav", "split": "train"},
    ]
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def _splits(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *overrides: str):
    monkeypatch.setenv("MMAPPS_CACHE_DIR", str(tmp_path / "cache"))
    cfg = resolve_config(domain, "smoke", overrides=[f"data.root={root}", *overrides])
    return build_datasets(cfg)


def test_every_named_input_is_used_or_counted(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    splits = _splits(root, tmp_path, monkeypatch)
    used = {splits.train[i].sample_id for i in range(len(splits.train))} | {splits.val[i].sample_id for i in range(len(splits.val))} | {splits.test[i].sample_id for i in range(len(splits.test))}
    assert used == {"ok", "edge", "badchat", "nochat", "noaudio", "silent"}
    by_id = {i.reason.split("(id ")[-1].split(")")[0] if "(id " in i.reason else i.path.rsplit(":", 1)[-1]: i for i in splits.issues.issues}
    manifest = str(root / "manifest.jsonl")
    lines = {i.path: i.reason for i in splits.issues.issues if i.path.startswith(manifest)}
    for number, expected in [(2, "'nan'|nan"), (3, "inf"), (4, "-1"), (5, "end <= start"), (6, "not a number"), (12, "already used by line 1")]:
        assert f"{manifest}:{number}" in lines, (number, lines)
        assert lines[f"{manifest}:{number}"].startswith("manifest line") and any(e in lines[f"{manifest}:{number}"] for e in expected.split("|"))
    assert lines[f"{manifest}:7"].startswith("segment outside the clip") and "id beyond" in lines[f"{manifest}:7"]
    assert lines[f"{manifest}:13"].startswith("unusable clip: id trunc") and "cut.mp4" in lines[f"{manifest}:13"]
    chat_issues = {i.path: i.reason for i in splits.issues.issues if i.reason.startswith("unusable chat log")}
    assert set(chat_issues) == {str(root / "allbad.jsonl"), str(root / "missing.jsonl")}
    assert "none of its 2 lines is usable" in chat_issues[str(root / "allbad.jsonl")] and "(id badchat)" in chat_issues[str(root / "allbad.jsonl")]
    assert [i.path for i in splits.issues.issues if i.reason.startswith("unusable audio file")] == [str(root / "missing.wav")]
    assert splits.info["skipped/manifest lines"] == 6 and splits.info["skipped/clips"] == 2
    assert splits.info["skipped/chat logs (clip used without chat)"] == 2 and splits.info["skipped/audio files (clip used without audio)"] == 1
    assert len(splits.issues) == 11 and by_id
    train = {splits.train[i].sample_id: splits.train[i] for i in range(len(splits.train))}
    assert train["badchat"].inputs["chat"].shape[0] == 0  # absent, not "a window with no message"
    assert train["ok"].inputs["chat"].shape[0] == 2 and train["ok"].inputs["chat"][0, -1] > 0
    assert train["noaudio"].inputs["audio"].shape[0] == 0 and train["ok"].inputs["audio"].shape[0] == 2
    assert train["silent"].inputs["audio"].shape[0] == 2  # the separate file gives it audio


def test_require_audio_counts_clips_without_usable_audio(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    splits = _splits(root, tmp_path, monkeypatch, "data.options.require_audio=true")
    manifest = str(root / "manifest.jsonl")
    reasons = {i.path: i.reason for i in splits.issues.issues}
    assert "no usable audio" in reasons[f"{manifest}:11"] and "id noaudio" in reasons[f"{manifest}:11"]
    assert "silent" in {splits.train[i].sample_id for i in range(len(splits.train))}  # its audio file is used


def test_stop_policy_names_the_first_bad_line(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataError, match=r"manifest.jsonl:2: manifest line: .*nan"):
        _splits(root, tmp_path, monkeypatch, "data.on_error=stop")
