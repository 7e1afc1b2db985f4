"""Manifest reading, split normalisation and patient-disjoint splits."""

from __future__ import annotations

from pathlib import Path

import pytest
from mmapps_domains.medical.gradcam import box_to_pixels
from mmapps_domains.medical.patient_split import split_by_patient
from mmapps_domains.medical.records import NoteSource, StudyRecord, read_manifest


def _rec(study, subject, split=None):
    return StudyRecord(study, subject, [Path("x.dcm")], None, {}, split, f"row {study}")


def test_seeded_split_is_patient_disjoint_and_reproducible():
    records = [_rec(f"s{i}", f"p{i // 3}") for i in range(60)]
    a = split_by_patient(records, (0.6, 0.2, 0.2), seed=1)
    assert a == split_by_patient(records, (0.6, 0.2, 0.2), seed=1) and a != split_by_patient(records, (0.6, 0.2, 0.2), seed=2)
    assert sorted(a.values()).count("train") == 12 and set(a.values()) == {"train", "val", "test"}


def test_given_split_is_checked():
    ok = [_rec("s1", "p1", "train"), _rec("s2", "p1", "train"), _rec("s3", "p2", "test")]
    assert split_by_patient(ok, (0.6, 0.2, 0.2), 0) == {"p1": "train", "p2": "test"}
    with pytest.raises(ValueError, match="subject_id p1 is in both 'train' and 'test'"):
        split_by_patient(ok + [_rec("s4", "p1", "test")], (0.6, 0.2, 0.2), 0)
    with pytest.raises(ValueError, match="split is blank"):
        split_by_patient(ok + [_rec("s5", "p3")], (0.6, 0.2, 0.2), 0)


def test_manifest_with_inline_labels_note_and_split(tmp_path):
    (tmp_path / "m.csv").write_text(
        "study_id,subject_id,dicom_paths,note_text,note_path,note_kind,split,Edema\n"
        "1,10,a.dcm;b.dcm,inline note,,referral,validate,1\n"
        "2,11,c.dcm,,,,test,\n"
        "3,12,d.dcm,,notes/s3.xml,,test,\n"
    )
    records = read_manifest(tmp_path / "m.csv")
    assert records[0].image_paths == [tmp_path / "a.dcm", tmp_path / "b.dcm"] and records[0].split == "val"
    assert records[0].note == NoteSource(None, "inline note", "referral") and records[1].note is None
    assert records[2].note == NoteSource("notes/s3.xml", None, None) and records[0].labels["Edema"] == "1"
    (tmp_path / "old.csv").write_text("study_id,subject_id,dicom_paths,note\n1,2,a.dcm,notes/a.xml\n")
    with pytest.raises(ValueError, match="column 'note' is ambiguous.*note_path.*note_text"):
        read_manifest(tmp_path / "old.csv")
    (tmp_path / "both.csv").write_text("study_id,subject_id,dicom_paths,note_path,note_text\n1,2,a.dcm,a.txt,text\n")
    with pytest.raises(ValueError, match="both.csv row 2: both note_path and note_text"):
        read_manifest(tmp_path / "both.csv")
    (tmp_path / "kind.csv").write_text("study_id,subject_id,dicom_paths,note_text,note_kind\n1,2,a.dcm,text,letter\n")
    with pytest.raises(ValueError, match="note_kind 'letter'; accepted referral"):
        read_manifest(tmp_path / "kind.csv")
    (tmp_path / "bad.csv").write_text("study_id,dicom_paths\n1,a.dcm\n")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['subject_id'\]"):
        read_manifest(tmp_path / "bad.csv")
    (tmp_path / "dup.csv").write_text("study_id,subject_id,dicom_paths\n1,2,a.dcm\n1,3,b.dcm\n")
    with pytest.raises(ValueError, match="appears twice"):
        read_manifest(tmp_path / "dup.csv")
    (tmp_path / "sp.csv").write_text("study_id,subject_id,dicom_paths,split\n1,2,a.dcm,holdout\n")
    with pytest.raises(ValueError, match="split value 'holdout'"):
        read_manifest(tmp_path / "sp.csv")


def test_box_to_pixels_follows_resize_longest_and_centre_pad():
    # 200 x 100 image -> 64 x 32 after resize, padded by 16 columns on each side
    assert box_to_pixels([0.0, 0.0, 1.0, 1.0], 200, 100, 64) == (16, 0, 48, 64)
    assert box_to_pixels([0.5, 0.25, 0.75, 0.5], 200, 100, 64) == (32, 16, 40, 32)
