"""Datasets on demo data written here: manifest and MIMIC-CXR layouts, patient splits, bad input, the cache."""

from __future__ import annotations

import csv

import pytest
import torch
from mmapps_domains.medical.dataset import age_band, build_datasets
from mmapps_domains.medical.demo import write_demo_data
from mmapps_domains.medical.labels import CHEXPERT_FINDINGS

from mmapps.config import RunConfig
from mmapps.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return write_demo_data(tmp_path_factory.mktemp("demo"), n=14, seed=1)


def _cfg(root, **options):
    return RunConfig(domain="medical", data={"root": root, "options": {"image_size": 32, **options}})


def _all(splits):
    return [splits.train[i] for i in range(len(splits.train))] + [splits.val[i] for i in range(len(splits.val))] + [splits.test[i] for i in range(len(splits.test))]


def test_manifest_dataset_samples(demo):
    splits = build_datasets(_cfg(demo))
    samples = _all(splits)
    assert len(samples) == 14 and len(splits.issues) == 0
    for s in samples:
        image = s.inputs["image"]
        assert image.dtype == torch.float32 and image.shape[1:] == (1, 32, 32) and 1 <= image.shape[0] <= 2
        assert s.targets["findings"].shape == (14,)
        assert s.inputs["note"] is None or "FINDINGS" not in s.inputs["note"]
        assert s.meta["view"] in ("PA", "AP") and s.meta["sex"] in ("M", "F") and s.meta["age_band"] != "unknown"
    by_split = {name: {s.group_id for s in ds.studies and [ds[i] for i in range(len(ds))]} for name, ds in (("train", splits.train), ("val", splits.val), ("test", splits.test))}
    assert not (by_split["train"] & by_split["test"]) and not (by_split["train"] & by_split["val"])
    assert set(splits.split_of_group.values()) == {"train", "val", "test"}
    assert not any("Doe" in repr(s.meta) or "MRN" in repr(s.meta) for s in samples)


def test_leakage_switch_and_views(demo):
    with pytest.raises(ConfigError, match="allow-report-leakage"):
        build_datasets(_cfg(demo, note_sections=["indication", "findings"]))
    splits = build_datasets(_cfg(demo, note_sections=["indication", "findings"], allow_report_leakage=True))
    notes = [s.inputs["note"] for s in _all(splits) if s.inputs["note"]]
    assert any("FINDINGS:" in n for n in notes)
    assert "REPORT LEAKAGE" in splits.info["notes"][0]  # the run's report shows it in its first lines
    frontal = build_datasets(_cfg(demo, views="frontal"))
    assert all(s.inputs["image"].shape[0] == 1 for s in _all(frontal))


def test_mimic_layout_uses_the_official_split(tmp_path):
    root = write_demo_data(tmp_path / "mimic", n=10, seed=2, layout="mimic")
    assert (root / "mimic-cxr-2.0.0-chexpert.csv").is_file()
    splits = build_datasets(_cfg(root))
    assert splits.info["layout"] == "mimic-cxr"
    official = {}
    with (root / "mimic-cxr-2.0.0-split.csv").open() as handle:
        for row in csv.DictReader(handle):
            official[row["subject_id"]] = {"validate": "val"}.get(row["split"], row["split"])
    assert splits.split_of_group == {k: official[k] for k in splits.split_of_group}


def test_bad_inputs_are_skipped_and_counted_or_stop_the_run(tmp_path):
    root = write_demo_data(tmp_path / "bad", n=8, seed=3)
    rows = list(csv.DictReader((root / "manifest.csv").open()))
    one_image = [r for r in rows if ";" not in r["dicom_paths"]]
    first_image = root / one_image[0]["dicom_paths"]
    first_image.write_bytes(first_image.read_bytes()[:600])  # truncated: the study's only image
    (root / one_image[1]["dicom_paths"]).unlink()  # missing: the study's only image
    labels = list(csv.DictReader((root / "labels.csv").open()))
    bad_label = next(r for r in labels if r["study_id"] not in (one_image[0]["study_id"], one_image[1]["study_id"]))
    bad_label["Edema"] = "2"
    with (root / "labels.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(labels[0]))
        writer.writeheader()
        writer.writerows(labels)
    splits = build_datasets(_cfg(root))
    reasons = " | ".join(str(i) for i in splits.issues.issues)
    assert len(splits.issues) == 5  # two images, the two studies left without an image, one label
    assert "image path does not exist" in reasons and "'Edema' has value '2'" in reasons and first_image.name in reasons
    assert reasons.count("has no usable image (of 1 listed") == 2
    assert len(splits.train) + len(splits.val) + len(splits.test) == 5
    with pytest.raises(DataError, match="--on-error"):
        build_datasets(RunConfig(domain="medical", data={"root": root, "on_error": "stop", "options": {"image_size": 32}}))


def test_every_study_failing_stops_with_a_clear_message(tmp_path):
    root = write_demo_data(tmp_path / "allbad", n=4, seed=4)
    for path in root.glob("images/*/*.dcm"):
        path.write_bytes(b"garbage")
    with pytest.raises(DataError, match="every one of 4 studies failed"):
        build_datasets(_cfg(root))


def test_age_band():
    assert [age_band(a) for a in (None, 25, 40, 79.5, 91)] == ["unknown", "<40", "40-59", "60-79", "80+"]


def test_mimic_gzipped_tables_and_negbio_labels(tmp_path):
    import gzip

    root = write_demo_data(tmp_path / "mimic", n=10, seed=2, layout="mimic")
    chexpert = list(csv.DictReader((root / "mimic-cxr-2.0.0-chexpert.csv").open()))
    negbio = [dict(row, Edema="1.0" if i % 2 else "0.0") for i, row in enumerate(chexpert)]  # differs from chexpert
    for stem in ("chexpert", "split", "metadata"):
        plain = root / f"mimic-cxr-2.0.0-{stem}.csv"
        (root / f"{plain.name}.gz").write_bytes(gzip.compress(plain.read_bytes()))
        plain.unlink()
    with gzip.open(root / "mimic-cxr-2.0.0-negbio.csv.gz", "wt", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(chexpert[0]))
        writer.writeheader()
        writer.writerows(negbio)
    column = CHEXPERT_FINDINGS.index("Edema")
    for source, rows in (("chexpert", chexpert), ("negbio", negbio)):
        splits = build_datasets(_cfg(root, mimic_labels=source))
        assert splits.info["layout"] == "mimic-cxr"
        expected = {r["study_id"]: float(r["Edema"]) if r["Edema"] not in ("", "-1.0") else None for r in rows}
        for ds in (splits.train, splits.val, splits.test):
            for study in ds.studies:
                if expected[study.study_id] is not None:
                    assert study.targets[column] == expected[study.study_id], (source, study.study_id)
