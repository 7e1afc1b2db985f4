"""De-identification (PS3.15 Annex E Basic Profile) on DICOM files written here, and the CLI verb."""

from __future__ import annotations

import numpy as np
import pydicom
from typer.testing import CliRunner

from mmapps_domains.medical.deidentify import deidentify_tree
from mmapps_domains.medical.dicom_write import XrayTags, write_xray_dicom

SECRETS = ("Secret^Person", "MRN-777", "ACC-555", "Hospital of Secrets", "19500101")


def _study(folder, burned=("NO", None)):
    tags = dict(patient_name="Secret^Person", patient_id="MRN-777", accession="ACC-555", institution="Hospital of Secrets",
                birth_date="19500101", study_uid="1.2.3.4.5.6", series_uid="1.2.3.4.5.7", sex="F", age="063Y")
    paths = []
    for k, b in enumerate(burned):
        path = write_xray_dicom(folder / f"img{k}.dcm", np.full((8, 8), 100 + k, np.uint16), XrayTags(burned_in=b, **tags), "rle" if k else "explicit_le")
        ds = pydicom.dcmread(path)
        ds.add_new(0x00091001, "LO", "private vendor secret")
        ds.OperatorsName = "Tech^Secret"
        ds.save_as(path)
        paths.append(path)
    return paths


def test_basic_profile_removes_identifiers_and_remaps_uids_consistently(tmp_path):
    originals = [pydicom.dcmread(p) for p in _study(tmp_path / "in")]
    summary = deidentify_tree(tmp_path / "in", tmp_path / "out", salt=b"fixed")
    assert summary.files == 2 and summary.actions["private tags removed"] == 2
    outs = [pydicom.dcmread(tmp_path / "out" / f"img{k}.dcm") for k in range(2)]
    for before, after in zip(originals, outs):
        raw = (tmp_path / "out" / "img0.dcm").read_bytes() + (tmp_path / "out" / "img1.dcm").read_bytes()
        for secret in SECRETS + ("Tech^Secret", "private vendor secret"):
            assert secret.encode() not in raw
        assert after.PatientName == "" and after.PatientID == "" and after.AccessionNumber == ""
        assert "InstitutionName" not in after and "OperatorsName" not in after and "PatientAge" not in after
        assert after.PatientIdentityRemoved == "YES" and "Annex E" in after.DeidentificationMethod
        assert after.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
        assert after.SOPClassUID == before.SOPClassUID
        assert after.file_meta.TransferSyntaxUID == before.file_meta.TransferSyntaxUID
        assert after.SOPInstanceUID != before.SOPInstanceUID and after.file_meta.MediaStorageSOPInstanceUID == after.SOPInstanceUID
        np.testing.assert_array_equal(after.pixel_array, before.pixel_array)
    assert outs[0].StudyInstanceUID == outs[1].StudyInstanceUID != originals[0].StudyInstanceUID
    assert outs[0].SOPInstanceUID != outs[1].SOPInstanceUID
    assert len(summary.burned_in_flagged) == 1 and "absent" in summary.burned_in_flagged[0]


def test_retain_patient_characteristics_option(tmp_path):
    _study(tmp_path / "in", burned=("NO",))
    deidentify_tree(tmp_path / "in", tmp_path / "out", retain_patient_characteristics=True)
    ds = pydicom.dcmread(tmp_path / "out" / "img0.dcm")
    assert ds.PatientSex == "F" and ds.PatientAge == "063Y"
    assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == ["113100", "113108"]


def test_cli_verb_prints_a_summary(tmp_path):
    from mmapps.cli.main import build_app

    _study(tmp_path / "in")
    (tmp_path / "in" / "readme.txt").write_text("not dicom")
    result = CliRunner().invoke(build_app(), ["medical", "deidentify", str(tmp_path / "in"), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "2 file(s) de-identified" in result.output and "BurnedInAnnotation YES or absent" in result.output
    assert not (tmp_path / "out" / "readme.txt").exists()
    missing = CliRunner().invoke(build_app(), ["medical", "deidentify", str(tmp_path / "nope"), str(tmp_path / "o2")])
    assert missing.exit_code != 0
