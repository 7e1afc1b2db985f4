"""Study indexes: the manifest CSV and the MIMIC-CXR layout, read into `StudyRecord`s.

Manifest CSV (see docs/medical.md): one row per study with ``study_id``, ``subject_id``,
``dicom_paths`` (``;``-separated, relative to the manifest's folder), optional ``note_path`` (a
``.txt`` or BioC ``.xml`` file) or ``note_text`` (the note inline), optional ``note_kind`` (e.g.
``referral``: the note is clinical context; see `mmapps_domains.medical.notes`), optional
``split`` (train / val / validate / test) and the label columns, or the labels in a separate CSV
joined by ``study_id``. A column named ``note`` is refused: a path and a text cannot be told apart.

MIMIC-CXR: ``files/pXX/pNNNNNNNN/sNNNNNNNN/*.dcm`` with reports ``sNNNNNNNN.txt``, and the
MIMIC-CXR-JPG tables ``mimic-cxr-2.0.0-{chexpert,negbio,split,metadata}.csv[.gz]`` in the root.
"""

from __future__ import annotations

import csv
import gzip
import io
from dataclasses import dataclass, field
from pathlib import Path

_SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validate": "val", "validation": "val", "test": "test"}


@dataclass(frozen=True)
class NoteSource:
    """Where a study's note is: a file (``path``, relative to the manifest) or inline ``text``, and its declared ``kind``."""

    path: str | None = None
    text: str | None = None
    kind: str | None = None


@dataclass
class StudyRecord:
    """One study before decoding: where its images, note and labels are."""

    study_id: str
    subject_id: str
    image_paths: list[Path]
    note: NoteSource | None
    labels: dict[str, str]
    split: str | None = None
    where: str = ""
    views: list[str | None] = field(default_factory=list)


def _open_table(path: Path) -> list[dict[str, str]]:
    raw = path.read_bytes()
    text = gzip.decompress(raw).decode("utf-8") if path.suffix == ".gz" else raw.decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(text)))


def _find_table(root: Path, stem: str) -> Path | None:
    for folder in (root, root.parent):
        for name in (f"{stem}.csv", f"{stem}.csv.gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def normalise_split(value: str | None, where: str) -> str | None:
    """``train`` / ``val`` / ``test`` (accepting validate, valid...) or None when blank."""
    if value is None or not str(value).strip():
        return None
    key = str(value).strip().lower()
    if key not in _SPLIT_NAMES:
        raise ValueError(f"{where}: split value {value!r}; accepted train, val (validate), test or blank")
    return _SPLIT_NAMES[key]


def read_manifest(path: Path, labels_csv: Path | None = None) -> list[StudyRecord]:
    """Read a manifest CSV.

    Args:
        path: the manifest.
        labels_csv: label table joined by ``study_id`` (used when given, else labels are the
            manifest's own columns; ``labels.csv`` beside the manifest is used when present).

    Returns:
        One `StudyRecord` per row.

    Raises:
        ValueError: missing required columns or a duplicated study_id.
    """
    rows = _open_table(path)
    columns = list(rows[0]) if rows else []
    required = ["study_id", "subject_id"]
    path_column = next((c for c in ("dicom_paths", "dicom_path", "image_paths", "path") if c in columns), None)
    missing = [c for c in required if c not in columns] + ([] if path_column else ["dicom_paths"])
    if missing:
        raise ValueError(f"{path}: manifest is missing column(s) {missing}; found {columns}. See docs/medical.md for the format")
    if "note" in columns:
        raise ValueError(f"{path}: column 'note' is ambiguous (a file path and inline text cannot be told apart); "
                         "rename it note_path (a .txt or BioC .xml file) or note_text (the note itself). See docs/medical.md")
    if labels_csv is None and (path.parent / "labels.csv").is_file() and path.name != "labels.csv":
        labels_csv = path.parent / "labels.csv"
    label_rows = {r["study_id"].strip(): r for r in _open_table(labels_csv)} if labels_csv else {}
    base, records, seen = path.parent, [], set()
    for i, row in enumerate(rows, start=2):
        where = f"{path.name} row {i}"
        study_id = row["study_id"].strip()
        if study_id in seen:
            raise ValueError(f"{where}: study_id {study_id!r} appears twice; each study is one row")
        seen.add(study_id)
        images = [base / p.strip() for p in row[path_column].replace("|", ";").split(";") if p.strip()]
        labels = label_rows.get(study_id, row) if labels_csv else row
        records.append(
            StudyRecord(study_id, row["subject_id"].strip(), images, _note_source(row, where), labels,
                        normalise_split(row.get("split"), where), where, [None] * len(images))
        )
    return records


def _note_source(row: dict[str, str], where: str) -> NoteSource | None:
    from mmapps_domains.medical.notes import NOTE_KINDS

    note_path, note_text = (row.get("note_path") or "").strip() or None, row.get("note_text") or None
    kind = (row.get("note_kind") or "").strip().lower() or None
    if note_path and note_text and note_text.strip():
        raise ValueError(f"{where}: both note_path and note_text are set; give one note per study")
    if kind is not None and kind not in NOTE_KINDS:
        raise ValueError(f"{where}: note_kind {kind!r}; accepted {', '.join(NOTE_KINDS)} or blank")
    if note_path is None and (note_text is None or not note_text.strip()):
        return None
    return NoteSource(note_path, note_text if note_path is None else None, kind)


def is_mimic_root(root: Path) -> bool:
    return (root / "files").is_dir() and (_find_table(root, "mimic-cxr-2.0.0-chexpert") or _find_table(root, "mimic-cxr-2.0.0-negbio")) is not None


def read_mimic_layout(root: Path, label_source: str = "chexpert") -> tuple[list[StudyRecord], dict[str, int]]:
    """Index a MIMIC-CXR tree.

    Args:
        root: folder holding ``files/`` and the MIMIC-CXR-JPG CSVs.
        label_source: ``chexpert`` or ``negbio`` label table.

    Returns:
        (records, counts) where counts has ``unlabelled_studies`` (studies without a label row,
        left out as in the MIMIC-CXR-JPG benchmarks) and ``studies_without_images``.
    """
    table = _find_table(root, f"mimic-cxr-2.0.0-{label_source}")
    if table is None:
        raise FileNotFoundError(f"{root}: mimic-cxr-2.0.0-{label_source}.csv(.gz) not found beside files/")
    labels = {r["study_id"].strip(): r for r in _open_table(table)}
    split_table, meta_table = _find_table(root, "mimic-cxr-2.0.0-split"), _find_table(root, "mimic-cxr-2.0.0-metadata")
    split_of_study = {r["study_id"].strip(): r["split"] for r in _open_table(split_table)} if split_table else {}
    view_of_dicom = {r["dicom_id"].strip(): r.get("ViewPosition") or None for r in _open_table(meta_table)} if meta_table else {}
    records, counts = [], {"unlabelled_studies": 0, "studies_without_images": 0}
    for group in sorted((root / "files").glob("p[0-9]*")):
        for patient in sorted(group.glob("p[0-9]*")):
            for study in sorted(p for p in patient.glob("s[0-9]*") if p.is_dir()):
                study_id, subject_id = study.name[1:], patient.name[1:]
                if study_id not in labels:
                    counts["unlabelled_studies"] += 1
                    continue
                images = sorted(study.glob("*.dcm"))
                if not images:
                    counts["studies_without_images"] += 1
                    continue
                report = study.parent / f"{study.name}.txt"
                where = f"files/{group.name}/{patient.name}/{study.name}"
                records.append(
                    StudyRecord(study_id, subject_id, images, NoteSource(str(report), kind="report") if report.is_file() else None, labels[study_id],
                                normalise_split(split_of_study.get(study_id), where), where,
                                [view_of_dicom.get(p.stem) for p in images])
                )
    return records, counts
