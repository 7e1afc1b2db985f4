"""Chat logs, manifest, UCF-Crime / XD-Violence readers and window labels."""

import json
from pathlib import Path

import numpy as np
import pytest

from mmapps.data import IssueLog
from mmapps.errors import DataError
from mmapps_domains.surveillance.annotations import (
    parse_xd_label, read_features, read_manifest, read_ucf_crime_annotations, read_xd_violence_annotations,
)
from mmapps_domains.surveillance.chat import messages_per_window, pseudonym, read_chat
from mmapps_domains.surveillance.windows import Segment, resample_features, window_labels

CLASSES = ("fight", "fall", "intrusion")


def test_jsonl_chat_with_iso_times_bad_lines_and_pseudonyms(tmp_path: Path) -> None:
    log = tmp_path / "chat.jsonl"
    log.write_text("\n".join([
        json.dumps({"t": 1.5, "user": "alice_K", "text": "hi"}),
        json.dumps({"t": "2026-05-01T13:00:04.5", "user": "bob", "text": "fight near gate 3"}),
        "{not json",
        json.dumps({"t": 99, "user": "bob", "text": "late"}),
        json.dumps({"t": 2, "user": "alice_K", "text": "ok"}),
    ]) + "\n")
    issues = IssueLog()
    msgs = read_chat(log, issues, start_time="2026-05-01T13:00:00", duration=10.0)
    assert [m.t for m in msgs] == [1.5, 2.0, 4.5]
    assert msgs[0].user == msgs[1].user == pseudonym("alice_K") != msgs[2].user
    assert all("alice" not in m.user and "bob" not in m.user for m in msgs)
    assert [i.path for i in issues.issues] == [str(log)]  # one issue per file; its bad lines are named inside
    reason = issues.issues[0].reason
    assert reason.startswith("chat lines skipped: 2 of 5 lines") and "line 3: not valid JSON" in reason and "line 4: time outside the clip" in reason
    assert "alice" not in issues.summary()
    with pytest.raises(DataError, match="chat.jsonl:3"):
        read_chat(log, IssueLog(on_error="stop"), start_time="2026-05-01T13:00:00", duration=10.0)
    assert messages_per_window(msgs, 5, 1.0) == [[], ["hi"], ["ok"], [], ["fight near gate 3"]]


def test_csv_chat_and_iso_without_start(tmp_path: Path) -> None:
    log = tmp_path / "chat.csv"
    log.write_text("t,user,text\n0.5,carol,hello\n2026-05-01T13:00:01,carol,x\n")
    issues = IssueLog()
    msgs = read_chat(log, issues, duration=5.0)
    assert [m.text for m in msgs] == ["hello"]
    assert issues.issues[0].path.endswith("chat.csv") and "line 3: field 't'" in issues.issues[0].reason and "start_time" in issues.issues[0].reason


def test_xd_labels() -> None:
    assert parse_xd_label("Bad.Boys.1995__#01-33-51_01-34-37_label_B2-B1-0") == ("shooting", "fighting")
    assert parse_xd_label("x_label_A") == ()
    with pytest.raises(ValueError, match="B9"):
        parse_xd_label("x_label_B9-0-0")


def test_manifest_validation(tmp_path: Path) -> None:
    lines = [
        {"clip": "a.mp4", "labels": ["fight"], "segments": [[1, 3, "fight"]], "split": "train", "chat": "a.jsonl"},
        {"clip": "b.mp4", "labels": [], "segments": []},
        {"clip": "c.mp4", "labels": ["fight"], "segments": [[5, 2, "fight"]]},
        {"clip": "d.mp4", "labels": ["dance"]},
        {"clip": "e_label_B1-0-0.mp4"},
    ]
    (tmp_path / "manifest.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    issues = IssueLog()
    entries = read_manifest(tmp_path, CLASSES + ("fighting",), issues)
    assert [e.clip_id for e in entries] == ["a", "b", "e_label_B1-0-0"]
    assert entries[0].segments == (Segment(1.0, 3.0, "fight"),) and entries[0].chat == tmp_path / "a.jsonl"
    assert entries[2].labels == ("fighting",) and entries[2].segments is None
    assert "end <= start" in issues.issues[0].reason and issues.issues[0].path.endswith("manifest.jsonl:3")
    assert "dance" in issues.issues[1].reason


def test_ucf_and_xd_readers(tmp_path: Path) -> None:
    ucf = tmp_path / "Temporal_Anomaly_Annotation.txt"
    ucf.write_text("Arrest001_x264.mp4  Arrest  1180  1230  -1  -1\nNormal_Videos_003_x264.mp4  Normal  -1 -1 -1 -1\n")
    out = read_ucf_crime_annotations(ucf, fps=30)
    assert out["Arrest001_x264"] == ("arrest", (Segment(1180 / 30, 1230 / 30, "arrest"),))
    assert out["Normal_Videos_003_x264"] == ("normal", ())
    xd = tmp_path / "annotations.txt"
    xd.write_text("Bad.Boys__#01_label_B2-B1-0 24 48 96 120\n")
    labels, segs = read_xd_violence_annotations(xd, fps=24)["Bad.Boys__#01_label_B2-B1-0"]
    assert labels == ("shooting", "fighting") and len(segs) == 4 and segs[0] == Segment(1.0, 2.0, "shooting")


def test_window_labels_and_features(tmp_path: Path) -> None:
    labels = window_labels([Segment(0.8, 2.5, "fight"), Segment(4.1, 4.3, "fall")], 5, 1.0, CLASSES)
    np.testing.assert_array_equal(labels[:, 0], [0, 1, 1, 0, 0])  # 0.2 s of window 0 < 30 %
    np.testing.assert_array_equal(labels[:, 1], [0, 0, 0, 0, 1])  # short event inside window 4
    np.save(tmp_path / "f.npy", np.arange(16, dtype=np.float32).reshape(8, 1, 2).repeat(3, 1))
    feats = read_features(tmp_path / "f.npy")
    assert feats.shape == (8, 2)
    out = resample_features(feats, duration=4.0, n_windows=4, window_s=1.0)
    np.testing.assert_allclose(out[:, 0], [1, 5, 9, 13])


def test_unusable_chat_logs_and_manifest_are_clean_errors(tmp_path: Path) -> None:
    from mmapps_domains.surveillance.chat import ChatLogError

    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(json.dumps({"t": 1, "user": "x", "text": "caf\u00e9"}).encode("latin-1").replace(b"\\u00e9", b"\xe9") + b"\n")
    with pytest.raises(ChatLogError, match="latin.jsonl: not UTF-8"):
        read_chat(latin, IssueLog())
    header = tmp_path / "header.csv"
    header.write_text("time,name,message\n1,x,hello\n")
    with pytest.raises(ChatLogError, match=r"CSV header \['time', 'name', 'message'\]; expected the columns t,user,text"):
        read_chat(header, IssueLog())
    (tmp_path / "empty.jsonl").write_text("\n\n")
    assert read_chat(tmp_path / "empty.jsonl", IssueLog()) == []  # a quiet channel, not an error
    (tmp_path / "manifest.jsonl").write_bytes(b"\xff\xfe{")
    with pytest.raises(DataError, match="manifest.jsonl: not UTF-8"):
        read_manifest(tmp_path, CLASSES, IssueLog())
