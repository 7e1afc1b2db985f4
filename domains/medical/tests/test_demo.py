"""Demo data: real DICOM files in several syntaxes, notes, CheXpert-style labels, locations."""

from __future__ import annotations

import csv
import json
from collections import Counter

import pydicom
import pytest

from mmapps_domains.medical.demo import BOTH, IMAGE_ONLY, NOTE_ONLY, write_demo_data
from mmapps_domains.medical.dicom import read_dicom_xray
from mmapps_domains.medical.labels import CHEXPERT_FINDINGS


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return write_demo_data(tmp_path_factory.mktemp("demo"), n=40, seed=0)


def test_files_and_tables(demo):
    manifest = list(csv.DictReader((demo / "manifest.csv").open()))
    labels = list(csv.DictReader((demo / "labels.csv").open()))
    assert len(manifest) == len(labels) == 40
    assert list(labels[0]) == ["subject_id", "study_id", *CHEXPERT_FINDINGS]
    values = Counter(v for row in labels for k, v in row.items() if k in CHEXPERT_FINDINGS)
    assert set(values) == {"1.0", "0.0", "-1.0", ""}
    per_patient = Counter(row["subject_id"] for row in manifest)
    assert max(per_patient.values()) >= 2  # several studies per patient
    assert any(row["note_path"] == "" for row in manifest) or len(manifest) < 60  # a few studies lack a note


def test_dicom_variety_and_identifiers(demo):
    syntaxes, photometric, modality, bits, sizes = Counter(), Counter(), Counter(), Counter(), set()
    for path in sorted(demo.glob("images/*/*.dcm")):
        ds = pydicom.dcmread(path)
        syntaxes[ds.file_meta.TransferSyntaxUID.name] += 1
        photometric[ds.PhotometricInterpretation] += 1
        modality[ds.Modality] += 1
        bits[ds.BitsStored] += 1
        sizes.add((ds.Rows, ds.Columns))
        assert ds.PatientName and ds.PatientID.startswith("MRN") and ds.ImagerPixelSpacing
        image, meta = read_dicom_xray(path)
        assert 0 <= image.min() and image.max() <= 1 and meta["view"] in ("PA", "AP", "LATERAL")
    assert {"MONOCHROME1", "MONOCHROME2"} <= set(photometric) and {"CR", "DX"} <= set(modality)
    assert len(syntaxes) >= 4 and any("RLE" in s for s in syntaxes) and any("2000" in s for s in syntaxes)
    assert len(bits) >= 3 and len(sizes) > 10


def test_notes_use_negation_and_hedging_and_full_reports(demo):
    texts = [p.read_text() for p in demo.glob("notes/*.txt")]
    joined = " ".join(texts).lower()
    assert "no known" in joined or "no history" in joined
    assert "cannot exclude" in joined or "query" in joined or "?" in joined
    assert all("INDICATION:" in t and "FINDINGS:" in t and "IMPRESSION:" in t for t in texts)


def test_locations_and_sources(demo):
    locations = json.loads((demo / "locations.json").read_text())
    sources = json.loads((demo / "finding_sources.json").read_text())
    assert set(sources["image_only"]) == set(IMAGE_ONLY) and set(sources["note_only"]) == set(NOTE_ONLY) and set(sources["both"]) == set(BOTH)
    boxes = [b for per in locations.values() for b in per.values()]
    assert boxes and all(0 <= b[0] < b[2] <= 1.05 and 0 <= b[1] < b[3] <= 1.05 for b in boxes)
    drawn = {f for per in locations.values() for f in per}
    assert drawn <= set(IMAGE_ONLY + BOTH) and not drawn & set(NOTE_ONLY)


def test_same_seed_same_data(tmp_path):
    a = write_demo_data(tmp_path / "a", n=5, seed=3)
    b = write_demo_data(tmp_path / "b", n=5, seed=3)
    assert (a / "labels.csv").read_text() == (b / "labels.csv").read_text()
    assert (a / "manifest.csv").read_text() == (b / "manifest.csv").read_text()
