"""Independent oracles on real files: dciodvfy (dicom3tools) and idiscore, over pydicom's and pydicom-data's DICOM files.

Inputs: CR radiographs of pydicom-data (RG1/RG3, uncompressed and JPEG 2000) and pydicom's own test
files (CT, MR, US, SC colour and palette, RT plan/dose/structure set, segmentation, deflate, big
endian, JPEG 2000, overlays). Each output must re-read, decode to the input's pixels, and give no
dciodvfy error the input did not have. idiscore (GPL; a dev-only oracle, never shipped) runs in its own
interpreter named by ``IDISCORE_PYTHON`` (it needs pydicom < 3): every attribute it removes, empties or
replaces must not keep its original value here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from mmapps_domains.medical.deid import DeidKey, DeidOptions, deidentify_tree
from pydicom.data import get_testdata_file

TEST_FILES = ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "rtdose.dcm", "rtstruct.dcm", "JPEG2000.dcm", "emri_small.dcm",
              "SC_rgb.dcm", "color-pl.dcm", "MR-SIEMENS-DICOM-WithOverlays.dcm", "liver.dcm", "image_dfl.dcm",
              "ExplVR_BigEnd.dcm", "GDCMJ2K_TextGBR.dcm", "US1_J2KR.dcm", "RG3_UNCR.dcm", "RG3_J2KR.dcm", "RG1_UNCR.dcm")
KEY = DeidKey(b"oracle-test-key-0123456789abcdef")


@pytest.fixture(scope="module")
def deidentified(tmp_path_factory) -> dict[Path, Path]:
    """Input file -> its de-identified output (Basic Profile; files without BurnedInAnnotation NO written unverified)."""
    root = tmp_path_factory.mktemp("oracle")
    (root / "in").mkdir()
    for name in TEST_FILES:
        path = get_testdata_file(name)
        if path is None:
            pytest.skip(f"{name} not available (pydicom-data not installed?)")
        shutil.copy(path, root / "in" / name)
    summary = deidentify_tree(root / "in", root / "out", KEY, DeidOptions(burned_in="write-unverified"))
    assert summary.count("refused") == 0, summary.lines()
    return {root / "in" / o.source: root / "out" / o.output for o in summary.outcomes}


def test_real_files_reread_and_decode_to_the_input_pixels(deidentified):
    assert len(deidentified) == len(TEST_FILES)
    for src, out in deidentified.items():
        before, after = pydicom.dcmread(src, force=True), pydicom.dcmread(out)
        if "TransferSyntaxUID" in before.file_meta:  # a file without meta gets the syntax it was read with
            assert after.file_meta.TransferSyntaxUID == before.file_meta.TransferSyntaxUID, src.name
        np.testing.assert_array_equal(after.pixel_array, before.pixel_array, err_msg=src.name) if "PixelData" in before else None
        verified = before.get("BurnedInAnnotation") == "NO" or "PixelData" not in before
        assert after.PatientIdentityRemoved == ("YES" if verified else "NO"), src.name
        for keyword in ("PatientName", "PatientBirthDate", "InstitutionName", "ReferringPhysicianName", "AccessionNumber", "PatientID"):
            original = str(before.get(keyword, "") or "")
            assert not original or str(after.get(keyword, "") or "") != original, f"{src.name}: {keyword} survives"
        name = str(before.get("PatientName", "") or "")
        assert len(name) < 4 or name.encode() not in out.read_bytes(), f"{src.name}: the patient name is still in the bytes"


def _dciodvfy_errors(path: Path) -> set[str]:
    run = subprocess.run(["dciodvfy", str(path)], check=False, capture_output=True, text=True, timeout=120)
    lines = (run.stdout + run.stderr).splitlines()
    return {re.sub(r"\[\d+\]", "[n]", re.sub(r"= *<[^>]*>", "=<v>", line)) for line in lines if line.startswith("Error")}


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (Debian package dicom3tools) is not installed")
def test_dciodvfy_finds_no_new_error(deidentified):
    new = {}
    for src, out in deidentified.items():
        added = _dciodvfy_errors(out) - _dciodvfy_errors(src)
        if added:
            new[src.name] = sorted(added)
    assert not new, json.dumps(new, indent=1)


ORACLE = r'''
import json, sys, warnings
warnings.simplefilter("ignore")
import pydicom
from idiscore.core import Core, Profile
from idiscore.defaults import get_dicom_rule_sets

core = Core(profile=Profile(rule_sets=[get_dicom_rule_sets().basic_profile]), bouncers=[], insertions=[])

def classify(before, after, prefix, out):
    for elem in before:
        if elem.tag.is_private or elem.tag.group in (0x0002, 0x7FE0):
            continue
        key = prefix + f"{int(elem.tag):08X}"
        if elem.tag not in after:
            out[key] = "X"
        elif elem.VR == "SQ":
            out[key] = "K" if len(after[elem.tag].value) else "Z"
            for k, (b, a) in enumerate(zip(elem.value, after[elem.tag].value)):
                classify(b, a, key + f"/{k}/", out)
        elif after[elem.tag].value in (None, "", b""):
            out[key] = "Z"
        else:
            out[key] = "K" if str(after[elem.tag].value) == str(elem.value) else "D"

result = {}
for path in sys.argv[1:]:
    before = pydicom.dcmread(path, force=True)
    after = core.deidentify(pydicom.dcmread(path, force=True))
    out = {}
    classify(before, after, "", out)
    result[path] = out
print(json.dumps(result))
'''


def _idiscore_python() -> str | None:
    python = os.environ.get("IDISCORE_PYTHON")
    if python and subprocess.run([python, "-c", "import idiscore"], check=False, capture_output=True).returncode == 0:
        return python
    return None


def _ours(before: pydicom.Dataset, after: pydicom.Dataset, prefix: str, out: dict) -> None:
    for elem in before:
        if elem.tag.is_private or elem.tag.group in (0x0002, 0x7FE0):
            continue
        key = prefix + f"{int(elem.tag):08X}"
        if elem.tag not in after:
            out[key] = "X"
        elif elem.VR == "SQ":
            out[key] = "K" if len(after[elem.tag].value) else "Z"
            for k, (b, a) in enumerate(zip(elem.value, after[elem.tag].value)):
                _ours(b, a, key + f"/{k}/", out)
        elif after[elem.tag].value in (None, "", b""):
            out[key] = "Z"
        else:
            out[key] = "K" if str(after[elem.tag].value) == str(elem.value) else "D"


@pytest.mark.skipif(_idiscore_python() is None, reason="idiscore not available: set IDISCORE_PYTHON to an interpreter with "
                    "`pip install idiscore==1.2.0` (GPL; it needs pydicom < 3, so keep it in its own virtual environment)")
def test_idiscore_oracle_agrees_nothing_it_removes_is_kept(deidentified):
    run = subprocess.run([_idiscore_python(), "-c", ORACLE, *map(str, deidentified)], check=False, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    theirs = json.loads(run.stdout)
    kept_here, stricter_here, compared = [], [], 0
    for src, out in deidentified.items():
        ours: dict[str, str] = {}
        _ours(pydicom.dcmread(src, force=True), pydicom.dcmread(out), "", ours)
        for key, their in theirs[str(src)].items():
            if key not in ours:
                continue
            compared += 1
            if their != "K" and ours[key] == "K":
                kept_here.append(f"{src.name} {key}: idiscore {their}, here K")
            if their == "K" and ours[key] != "K":
                stricter_here.append(f"{src.name} {key}: idiscore K, here {ours[key]}")
    print(f"idiscore oracle: {compared} attributes compared, {len(kept_here)} kept here but not by idiscore, "
          f"{len(stricter_here)} changed here but kept by idiscore:", *stricter_here, sep="\n  ")
    assert compared > 1000 and not kept_here, "\n".join(kept_here)

