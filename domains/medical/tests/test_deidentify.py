"""De-identification (PS3.15 Annex E) on DICOM files written here by pydicom, and the CLI verb."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
from mmapps_domains.medical.deid import DeidKey, DeidOptions, deidentify_tree, load_key
from mmapps_domains.medical.dicom_write import XrayTags, write_xray_dicom
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.sequence import Sequence
from typer.testing import CliRunner

from mmapps.errors import ConfigError

KEY = DeidKey(b"test-key-not-for-production-0001")
SECRETS = ("Secret^Person", "MRN-777", "ACC-555", "Hospital of Secrets", "19500101", "Tech^Secret", "private vendor secret",
           "Nested^Name", "SRC_AE_SECRET", "IconSecret")


def _xray(path, burned="NO", syntax="explicit_le", study="1.2.826.0.1.3680043.9.7777.1", extra=None, pixels=None):
    tags = XrayTags(patient_name="Secret^Person", patient_id="MRN-777", accession="ACC-555", institution="Hospital of Secrets",
                    birth_date="19500101", study_uid=study, series_uid=study + ".2", sex="F", age="063Y", burned_in=burned,
                    extra=dict(OperatorsName="Tech^Secret", **(extra or {})))
    path = write_xray_dicom(path, pixels if pixels is not None else np.arange(64, dtype=np.uint16).reshape(8, 8) + 100, tags, syntax)
    ds = pydicom.dcmread(path)
    ds.private_block(0x0009, "ACME 1.1", create=True).add_new(0x01, "LO", "private vendor secret")
    icon = Dataset()
    icon.PatientName = "IconSecret"
    ref = Dataset()
    ref.ReferencedSOPInstanceUID, ref.ReferencedSOPClassUID = "1.2.826.0.1.3680043.9.7777.99", "1.2.840.10008.5.1.4.1.1.1"
    ref.add_new(0x00100010, "PN", "Nested^Name")
    ds.IconImageSequence = Sequence([icon])
    ds.ReferencedImageSequence = Sequence([ref])
    ds.add_new(0x60000010, "US", 8)  # overlay plane 6000: rows, columns, data
    ds.add_new(0x60000011, "US", 8)
    ds.add_new(0x60003000, "OW", b"\xff" * 8)
    ds.file_meta.SourceApplicationEntityTitle = "SRC_AE_SECRET"
    ds.preamble = b"Secret^Person".ljust(128, b"!")
    ds.save_as(path, enforce_file_format=True)
    return path


def _written(out):
    return sorted(out.rglob("*.dcm"))


def test_basic_profile_on_written_files(tmp_path):
    src = [_xray(tmp_path / "in" / "Secret^Person" / f"img{k}.dcm", syntax=s) for k, s in enumerate(("explicit_le", "rle"))]
    summary = deidentify_tree(tmp_path / "in", tmp_path / "out", KEY)
    assert summary.files == 2 and summary.count("refused") == 0, summary.lines()
    outs = _written(tmp_path / "out")
    assert len(outs) == 2 and not any("Secret" in str(p) or "img" in str(p) for p in outs)
    for path, before in zip(outs, sorted((pydicom.dcmread(p) for p in src), key=lambda d: KEY.uid(d.SOPInstanceUID))):
        raw, ds = path.read_bytes(), pydicom.dcmread(path)
        assert not [s for s in SECRETS if s.encode() in raw] and KEY.secret not in raw
        assert raw[:128] == b"\x00" * 128
        assert path.name == f"{ds.SOPInstanceUID}.dcm" and path.parent.name == ds.SeriesInstanceUID
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID == KEY.uid(before.SOPInstanceUID)
        assert "SourceApplicationEntityTitle" not in ds.file_meta
        assert ds.PatientName == "" and ds.PatientID == KEY.pseudonym("MRN-777") and len(ds.PatientID) == 24
        assert "InstitutionName" not in ds and "OperatorsName" not in ds and "PatientAge" not in ds
        assert ds.SOPClassUID == before.SOPClassUID and ds.file_meta.TransferSyntaxUID == before.file_meta.TransferSyntaxUID
        assert not [e for e in ds if e.tag.is_private] and 0x60003000 not in ds and 0x60000010 not in ds
        assert "ReferencedImageSequence" not in ds and "IconImageSequence" not in ds  # X/Z/U* and X at the top of a CR
        assert ds.PatientIdentityRemoved == "YES" and ds.LongitudinalTemporalInformationModified == "REMOVED"
        assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == ["113100"]
        np.testing.assert_array_equal(ds.pixel_array, before.pixel_array)
    assert pydicom.dcmread(outs[0]).StudyInstanceUID == pydicom.dcmread(outs[1]).StudyInstanceUID
    assert not any(s in line for line in summary.lines() for s in SECRETS)


def test_two_batches_stay_one_study_under_one_key(tmp_path):
    _xray(tmp_path / "a" / "x.dcm")
    _xray(tmp_path / "b" / "y.dcm")
    deidentify_tree(tmp_path / "a", tmp_path / "out", KEY)
    deidentify_tree(tmp_path / "b", tmp_path / "out", DeidKey(b"test-key-not-for-production-0001"))
    deidentify_tree(tmp_path / "b", tmp_path / "other", DeidKey(b"another-key-another-key-0002"))
    assert len({p.parent.parent.name for p in _written(tmp_path / "out")}) == 1
    assert {p.parent.parent.name for p in _written(tmp_path / "other")}.isdisjoint({p.parent.parent.name for p in _written(tmp_path / "out")})


def test_no_key_no_run_and_short_keys_refused(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="--key-file"):
        load_key(None, None)
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        DeidKey(b"short")
    monkeypatch.setenv("MY_DEID_KEY", "k" * 32)
    key, _ = load_key(key_env="MY_DEID_KEY")
    assert key.secret == b"k" * 32
    path = tmp_path / "deid.key"
    path.write_text("ab" * 32 + "\n")
    path.chmod(0o644)
    key, warnings = load_key(key_file=path)
    assert key.secret == b"ab" * 32 and "chmod 600" in warnings[0]


def test_missing_sop_instance_uid_does_not_keep_the_file_meta_one(tmp_path):
    path = _xray(tmp_path / "in" / "a.dcm")
    ds = pydicom.dcmread(path)
    original = ds.file_meta.MediaStorageSOPInstanceUID
    del ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=False)
    deidentify_tree(tmp_path / "in", tmp_path / "out", KEY)
    (out,) = _written(tmp_path / "out")
    assert original.encode() not in out.read_bytes()
    assert pydicom.dcmread(out).SOPInstanceUID == KEY.uid(original)


def _raw_dataset(ds: Dataset, with_meta: bool) -> bytes:
    """A dataset as some toolkits write it: no preamble, no 'DICM', optionally the file meta group."""
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, not with_meta
    if with_meta:
        write_file_meta_info(fp, ds.file_meta, enforce_standard=True)
        fp.is_implicit_VR = False
    write_dataset(fp, ds)
    return fp.getvalue()


@pytest.mark.parametrize("with_meta", [False, True])
def test_dicom_without_preamble_is_read(tmp_path, with_meta):
    ds = pydicom.dcmread(_xray(tmp_path / "src.dcm"))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "raw").write_bytes(_raw_dataset(ds, with_meta))
    summary = deidentify_tree(tmp_path / "in", tmp_path / "out", KEY)
    assert summary.files == 1, summary.lines()
    np.testing.assert_array_equal(pydicom.dcmread(_written(tmp_path / "out")[0]).pixel_array, ds.pixel_array)


@pytest.mark.parametrize("cut", [40, 300, 700])
def test_truncated_input_is_refused_with_the_reason(tmp_path, cut):
    path = _xray(tmp_path / "in" / "a.dcm")
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - cut] if cut < 100 else raw[:cut])
    summary = deidentify_tree(tmp_path / "in", tmp_path / "out", KEY)
    assert summary.files == 0 and summary.outcomes[0].status == "refused" and "truncated" in summary.outcomes[0].reason
    assert not _written(tmp_path / "out")


def test_burned_in_yes_or_absent_refused_unless_asked(tmp_path):
    _xray(tmp_path / "in" / "yes.dcm", burned="YES")
    _xray(tmp_path / "in" / "absent.dcm", burned=None, study="1.2.826.0.1.3680043.9.7777.5")
    summary = deidentify_tree(tmp_path / "in", tmp_path / "out", KEY)
    assert [o.status for o in summary.outcomes] == ["refused", "refused"]
    assert "BurnedInAnnotation is absent" in summary.outcomes[0].reason and "is YES" in summary.outcomes[1].reason
    summary = deidentify_tree(tmp_path / "in", tmp_path / "out", KEY, DeidOptions(burned_in="write-unverified"))
    assert summary.files == 2
    assert {pydicom.dcmread(p).PatientIdentityRemoved for p in _written(tmp_path / "out")} == {"NO"}


def test_retain_safe_private_keeps_listed_creator_offsets_only(tmp_path):
    path = _xray(tmp_path / "in" / "a.dcm")
    ds = pydicom.dcmread(path)
    block = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)  # lands in block 0x11 of group 0019? not assumed
    block.add_new(0x0C, "IS", "1000")  # B_value: Table E.3.10-1
    block.add_new(0x50, "LO", "vendor free text")  # not on the list
    ds.save_as(path, enforce_file_format=True)
    deidentify_tree(tmp_path / "in", tmp_path / "out", KEY, DeidOptions(retain_safe_private=True))
    out = pydicom.dcmread(_written(tmp_path / "out")[0])
    kept = out.private_block(0x0019, "SIEMENS MR HEADER")
    assert kept[0x0C].value == "1000" and 0x50 not in kept
    assert b"vendor free text" not in _written(tmp_path / "out")[0].read_bytes()
    assert "113111" in [c.CodeValue for c in out.DeidentificationMethodCodeSequence]


def test_overlay_bits_above_high_bit_are_cleared(tmp_path):
    stored = np.full((8, 8), 0x0123, np.uint16)
    stored[:2] |= 0x2000  # an overlay drawn in bit 13 of 12-bit data
    path = _xray(tmp_path / "in" / "a.dcm", pixels=stored)
    summary = deidentify_tree(tmp_path / "in", tmp_path / "out", KEY)
    out = pydicom.dcmread(_written(tmp_path / "out")[0])
    assert summary.actions["pixels with overlay bits above HighBit cleared"] == 16
    assert np.frombuffer(out.PixelData, "<u2").max() == 0x0123 and path.exists()


def test_text_decoded_with_specific_character_set_before_cleaning(tmp_path):
    _xray(tmp_path / "in" / "a.dcm", extra={"SpecificCharacterSet": "ISO_IR 192", "StudyDescription": "Thorax Müller Jürgen 2024-01-15"})
    ds = pydicom.dcmread(tmp_path / "in" / "a.dcm")
    ds.PatientName = "Müller^Jürgen"
    ds.save_as(tmp_path / "in" / "a.dcm", enforce_file_format=True)
    deidentify_tree(tmp_path / "in", tmp_path / "out", KEY, DeidOptions(clean_descriptors=True))
    path = _written(tmp_path / "out")[0]
    out = pydicom.dcmread(path)
    assert out.StudyDescription == "Thorax [REMOVED] [REMOVED] [REMOVED]"
    assert "Müller".encode() not in path.read_bytes()


def test_modified_dates_shift_each_patient_consistently(tmp_path):
    _xray(tmp_path / "in" / "a.dcm")
    _xray(tmp_path / "in" / "b.dcm", study="1.2.826.0.1.3680043.9.7777.8")
    deidentify_tree(tmp_path / "in", tmp_path / "out", KEY, DeidOptions(retain_modified_dates=True))
    outs = [pydicom.dcmread(p) for p in _written(tmp_path / "out")]
    shift = KEY.date_shift_days("MRN-777")
    expected = (np.datetime64("2024-01-15") - np.timedelta64(shift, "D")).astype(str).replace("-", "")
    assert {o.StudyDate for o in outs} == {expected} and outs[0].LongitudinalTemporalInformationModified == "MODIFIED"
    assert outs[0].PatientBirthDate == ""  # Z: not a longitudinal date under E.3.6


def test_cli_lists_every_input_and_exit_codes(tmp_path):
    from mmapps.cli.main import build_app

    _xray(tmp_path / "in" / "ok.dcm")
    _xray(tmp_path / "in" / "burned.dcm", burned="YES", study="1.2.826.0.1.3680043.9.7777.3")
    (tmp_path / "in" / "readme.txt").write_text("not dicom")
    key = tmp_path / "deid.key"
    key.write_text("00112233445566778899aabbccddeeff")
    key.chmod(0o600)
    app, run = build_app(), CliRunner().invoke
    result = run(app, ["medical", "deidentify", str(tmp_path / "in"), str(tmp_path / "out"), "--key-file", str(key),
                       "--report", str(tmp_path / "report.json")])
    assert result.exit_code == 0, result.output
    assert "3 input(s): 1 written, 1 refused, 1 skipped" in result.output
    assert "#1 refused: BurnedInAnnotation is YES" in result.output and "#3 skipped: not DICOM" in result.output
    assert "burned.dcm" not in result.output and "ok.dcm" not in result.output  # input names may hold patient names
    assert not any(s in result.output for s in SECRETS) and "00112233445566778899aabbccddeeff" not in result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["written"] == 1 and [f["source"] for f in report["files"]] == ["burned.dcm", "ok.dcm", "readme.txt"]
    nokey = run(app, ["medical", "deidentify", str(tmp_path / "in"), str(tmp_path / "o2")])
    assert nokey.exit_code == 2 and "--key-file" in nokey.output and "Traceback" not in nokey.output
    nothing = run(app, ["medical", "deidentify", str(tmp_path / "in" / "burned.dcm"), str(tmp_path / "o3"), "--key-file", str(key)])
    assert nothing.exit_code == 3 and "1 refused" in nothing.output
    missing = run(app, ["medical", "deidentify", str(tmp_path / "nope"), str(tmp_path / "o4"), "--key-file", str(key)])
    assert missing.exit_code == 2 and "Traceback" not in missing.output
    stop = run(app, ["medical", "deidentify", str(tmp_path / "in"), str(tmp_path / "o5"), "--key-file", str(key), "--on-error", "stop"])
    assert stop.exit_code == 3 and "input #1: BurnedInAnnotation is YES" in stop.output
