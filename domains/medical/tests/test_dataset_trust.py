"""Every input used or counted: partly unreadable studies, NaN labels, refused notes, an empty test split."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from mmapps_domains.medical.dataset import build_datasets
from mmapps_domains.medical.dicom_write import XrayTags, write_xray_dicom

from mmapps.config import RunConfig
from mmapps.errors import DataError


def _image(path, seed):
    stored = np.random.default_rng(seed).integers(0, 4096, size=(40, 32)).astype(np.uint16)
    return write_xray_dicom(path, stored, XrayTags(window=(2048, 4096), patient_name="Secret^Person", patient_id="MRN-77"))


def _manifest(root, rows, columns=("study_id", "subject_id", "dicom_paths", "note_path", "note_text", "note_kind", "split", "Edema")):
    root.mkdir(parents=True, exist_ok=True)
    with (root / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows([{c: row.get(c, "") for c in columns} for row in rows])
    return root


def _cfg(root, **data):
    return RunConfig(domain="medical", data={"root": root, **data, "options": {"image_size": 16, "findings": ["Edema"], "augment": False}})


def _study(i, split, **extra):
    return {"study_id": f"s{i}", "subject_id": f"p{i}", "dicom_paths": f"img/{i}a.dcm", "split": split, "Edema": str(i % 2),
            "note_text": "INDICATION: cough.", **extra}


def _write_images(root, n):
    for i in range(n):
        _image(root / "img" / f"{i}a.dcm", i)


def test_a_study_keeps_its_readable_images_and_counts_the_bad_one(tmp_path):
    root = tmp_path / "d"
    rows = [_study(i, ("train", "val", "test")[i % 3]) for i in range(6)]
    _write_images(root, 6)
    _image(root / "img" / "0b.dcm", 10).write_bytes(b"DICM-not-really")  # an unreadable second image
    rows[0]["dicom_paths"] = "img/0a.dcm;img/0b.dcm;img/0c.dcm"  # 0c does not exist
    splits = build_datasets(_cfg(_manifest(root, rows)))
    study = next(s for ds in (splits.train, splits.val, splits.test) for s in ds.studies if s.study_id == "s0")
    assert [p.name for p in study.image_paths] == ["0a.dcm"]
    reasons = [str(i) for i in splits.issues.issues]
    assert len(reasons) == 2 and any("0b.dcm" in r and "not a DICOM file" in r for r in reasons)
    assert any("0c.dcm" in r and "image path does not exist (study s0" in r for r in reasons)
    assert not any("Secret" in r or "MRN-77" in r for r in reasons)


def test_nan_labels_are_counted_not_read_as_blank(tmp_path):
    root = tmp_path / "d"
    rows = [_study(i, ("train", "val", "test")[i % 3]) for i in range(6)]
    rows[3]["Edema"] = "NaN"
    _write_images(root, 6)
    splits = build_datasets(_cfg(_manifest(root, rows)))
    assert len(splits.issues) == 1 and "'Edema' has value 'NaN'" in str(splits.issues.issues[0])
    assert "s3" not in {s.study_id for ds in (splits.train, splits.val, splits.test) for s in ds.studies}


def test_refused_notes_are_counted_the_study_is_kept_and_the_leakage_line_says_what_was_fed(tmp_path):
    root = tmp_path / "d"
    rows = [_study(i, ("train", "val", "test")[i % 3]) for i in range(6)]
    rows[0]["note_text"] = "Large left effusion."  # an impression without headers
    rows[1].update(note_text="", note_path="notes/s1.txt")
    rows[2].update(note_text="Known CHF, short of breath.", note_kind="referral")
    rows[3].update(note_text="", note_path="notes/s3.csv")
    rows[4].update(note_text="INDICATION: cough.\nOPINION: effusion.")
    (root / "notes").mkdir(parents=True)
    (root / "notes" / "s1.txt").write_text("HISTORY: asthma\nIMPRESSION: effusion")
    _write_images(root, 6)
    splits = build_datasets(_cfg(_manifest(root, rows)))
    notes = {s.study_id: s.note for ds in (splits.train, splits.val, splits.test) for s in ds.studies}
    assert len(notes) == 6  # no study lost for its note
    assert notes["s0"] is None and notes["s3"] is None
    assert notes["s1"] == "HISTORY: asthma" and notes["s2"] == "Known CHF, short of breath." and notes["s4"] == "INDICATION: cough."
    reasons = [str(i) for i in splits.issues.issues]
    assert len(reasons) == 2
    assert any("note refused" in r and "study s0" in r and "no section header" in r for r in reasons)
    assert any("s3.csv" in r and "suffix '.csv' is not supported" in r for r in reasons)
    line = splits.info["note_input"]
    assert line.startswith("clinical context only, no FINDINGS / IMPRESSION")
    assert "INDICATION+HISTORY sections: 3 note(s)" in line and "whole note (note_kind=referral): 1 note(s)" in line
    assert "refused (not fed): 1" in line and "unreadable (not fed): 1" in line and splits.info["report_leakage"] is False


def test_an_empty_test_split_is_a_clean_data_error(tmp_path):
    from mmapps.errors import DataError as Base

    root = tmp_path / "d"
    rows = [_study(i, ("train", "val")[i % 2]) for i in range(4)]
    _write_images(root, 4)
    with pytest.raises(DataError, match="the test split is empty: the manifest's split column assigns no study to it; "
                                        "to fill it, give some patients split=test") as info:
        build_datasets(_cfg(_manifest(root, rows)))
    assert isinstance(info.value, Base) and info.value.exit_code == 3
    rows = [_study(i, ("train", "val", "test")[i % 3]) for i in range(3)]
    (root / "img" / "2a.dcm").write_bytes(b"junk")
    with pytest.raises(DataError, match=r"the test split is empty: its 1 listed stud\(ies\) were all skipped"):
        build_datasets(_cfg(_manifest(root, rows)))


def test_cli_empty_test_split_exits_3_without_a_traceback(tmp_path):
    from typer.testing import CliRunner

    from mmapps.cli.main import app

    root = tmp_path / "d"
    _write_images(root, 4)
    _manifest(root, [_study(i, ("train", "val")[i % 2]) for i in range(4)])
    result = CliRunner().invoke(app, ["medical", "train", "--data", str(root / "manifest.csv"), "--recipe", "smoke",
                                      "--out", str(tmp_path / "run"), "--set", "data.options.findings=[Edema]"])
    assert result.exit_code == 3, result.output
    assert "test split is empty" in result.output and "Traceback" not in result.output
