"""Every attribute of PS3.15 Table E.1-1, set in a written file (top level and inside a sequence), checked after de-identification.

The expected outcome of each row is read here from the standard's table as shipped in ../shared (not
from the de-identifier's own table module), and checked on the file re-read from disk: X absent, Z
present and empty, D present and replaced, U a new 2.25 UID, K unchanged; a conditional action may
take any of its alternatives, but never keeps the original value.
"""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from mmapps_domains.medical.deid import DeidKey, DeidOptions, deidentify_tree
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

STANDARD_TABLE = Path(__file__).resolve().parents[3] / ".." / "shared" / "dicom-standard" / "confidentiality_profile_attributes.json"
SHIPPED_TABLE = Path(__file__).resolve().parents[1] / "deid" / "profile_table.json"
CONTAINER = 0x00400260  # Performed Protocol Code Sequence: not in Table E.1-1, so only its contents are judged
KEY = DeidKey(b"table-test-key-0123456789abcdef")


def _rows() -> list[dict]:
    path = STANDARD_TABLE if STANDARD_TABLE.exists() else SHIPPED_TABLE
    return [r for r in json.loads(path.read_text()) if "GGGG" not in r["tag"].upper()]


def _tag(text: str) -> int:
    digits = text.strip("()").replace(",", "").upper()
    if digits.startswith("50XX"):
        return 0x50003000  # Curve Data in the first curve group
    return int(digits.replace("XX", "02", 1) if digits.startswith("60XX") else digits, 16)


def _sentinel(vr: str, k: int):
    """A valid value for ``vr``, unique to row ``k``."""
    if vr == "SQ":
        item = Dataset()
        item.add_new(0x00100010, "PN", f"Nested^Secret{k}")
        return Sequence([item])
    return {
        "DA": f"19{k % 90 + 10:02d}{k % 12 + 1:02d}{k % 28 + 1:02d}", "TM": f"{k % 24:02d}{k % 60:02d}17",
        "DT": f"19{k % 90 + 10:02d}{k % 12 + 1:02d}{k % 28 + 1:02d}101112", "UI": f"1.2.826.0.1.3680043.9.7777.{k + 1}",
        "US": k + 7, "IS": str(k + 7), "DS": f"{k + 7}.5", "AS": f"{k % 90 + 10:03d}Y", "CS": f"SECRET{k}",
        "AE": f"AE{k}SECRET", "UR": f"http://secret{k}.example", "OB": f"bytes{k:05d}!!".encode(), "UN": f"bytes{k:05d}!!".encode(),
    }.get(vr, f"Secret{k}Value")


def _study_file(path: Path, rows: list[dict]) -> dict[int, tuple[str, object]]:
    """Write a CR file carrying every row's attribute at the top level and in a container item; returns tag -> (vr, value)."""
    ds, inner = Dataset(), Dataset()
    placed: dict[int, tuple[str, object]] = {}
    for k, row in enumerate(rows):
        tag = _tag(row["tag"])
        if tag >> 16 in (0x0000, 0x0002):
            continue  # command and file meta groups are not dataset attributes
        vr = "OB" if tag >> 16 in range(0x5000, 0x5100) else dictionary_VR(tag).split(" or ")[0]
        placed[tag] = (vr, _sentinel(vr, k))
        ds.add_new(tag, vr, placed[tag][1])
        inner.add_new(tag, vr, _sentinel(vr, k))
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR: no pixels, so no burned-in question
    ds.add_new(CONTAINER, "SQ", Sequence([inner]))
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)
    return placed


def _outcome(before: object, after: Dataset, tag: int) -> str:
    if tag not in after:
        return "X"
    value = after[tag].value
    if value in (None, "", b"") or (isinstance(value, Sequence) and len(value) == 0):
        return "Z"
    if str(value) == str(before) or (isinstance(value, Sequence) and "Nested^Secret" in str(value)):
        return "K"
    if after[tag].VR == "UI":
        return "U" if str(value).startswith("2.25.") else "K"
    return "D"


def _allowed(action: str) -> set[str]:
    allowed = {a.rstrip("*") for a in action.split("/")}
    if "U" in allowed:
        allowed |= {"D"}  # a sequence of references kept with its UIDs replaced reads as changed content
    if action.startswith("U") or action == "D":
        allowed |= {"U", "D"}  # D on a UID is a new UID; U on a sequence replaces the UIDs inside
    return allowed


def _run(tmp_path: Path, options: DeidOptions) -> tuple[list[dict], dict, Dataset]:
    rows = _rows()
    (tmp_path / "in").mkdir()
    placed = _study_file(tmp_path / "in" / "every_attribute.dcm", rows)
    summary = deidentify_tree(tmp_path / "in", tmp_path / "out", KEY, options)
    assert summary.files == 1, summary.lines()
    (written,) = list((tmp_path / "out").rglob("*.dcm"))
    return rows, placed, pydicom.dcmread(written)


def test_every_attribute_of_the_table_gets_its_basic_profile_action(tmp_path):
    rows, placed, after = _run(tmp_path, DeidOptions())
    nested = after[CONTAINER].value[0]
    wrong = []
    for row in rows:
        tag = _tag(row["tag"])
        if tag not in placed:
            continue
        before = placed[tag][1]
        for where, ds in (("top", after), ("nested", nested)):
            got, allowed = _outcome(before, ds, tag), _allowed(row["basicProfile"])
            if tag == 0x00100020:
                allowed = {"D"}  # PatientID: the keyed pseudonym
            if got not in allowed:
                wrong.append(f"{row['tag']} {row['name']} ({where}): {row['basicProfile']} expected, found {got}")
    assert not wrong, "\n".join(wrong)
    assert len(placed) >= 615  # every row but the private, command and file-meta rows was really set


def test_no_original_value_survives_anywhere_in_the_bytes(tmp_path):
    _, placed, _ = _run(tmp_path, DeidOptions())
    raw = next((tmp_path / "out").rglob("*.dcm")).read_bytes()
    leaked = [f"{tag:08X}" for tag, (vr, value) in placed.items()
              if vr not in ("SQ", "US") and isinstance(value, str) and len(value) >= 8 and value.encode() in raw]
    assert not leaked and b"Nested^Secret" not in raw


@pytest.mark.parametrize("option", ["retain_uids", "retain_device_identity", "retain_institution_identity", "retain_patient_characteristics",
                                    "retain_full_dates", "retain_modified_dates", "clean_descriptors", "clean_structured_content",
                                    "clean_graphics"])
def test_each_option_applies_its_column(tmp_path, option):
    from mmapps_domains.medical.deid.table import OPTION_COLUMNS

    rows, placed, after = _run(tmp_path, DeidOptions(**{option: True}))
    column, wrong = OPTION_COLUMNS[option], []
    for row in rows:
        tag, said = _tag(row["tag"]), row.get(OPTION_COLUMNS[option])
        if tag not in placed or not said:
            continue
        got = _outcome(placed[tag][1], after, tag)
        if said == "K" and placed[tag][0] == "SQ" and got == "D":
            got = "K"  # the sequence is kept; the name inside it still gets its own action
        if said == "K" and got != "K":
            wrong.append(f"{row['tag']} {row['name']}: K under {column}, found {got}")
        if said == "C" and placed[tag][0] in ("DA", "DT") and got in ("K", "X"):
            wrong.append(f"{row['tag']} {row['name']}: C (shifted date) under {column}, found {got}")
    assert not wrong, "\n".join(wrong)
    codes = [c.CodeValue for c in after.DeidentificationMethodCodeSequence]
    assert codes == ["113100", DeidOptions(**{option: True}).method_codes()[1].value]
