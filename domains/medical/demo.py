"""Demo data: synthetic, format-faithful chest radiograph studies with notes and CheXpert-style labels.

Written files (``layout="manifest"``, the default)::

    OUT/manifest.csv        study_id, subject_id, dicom_paths (';'-separated), note_path, note_kind (report)
    OUT/labels.csv          subject_id, study_id and the 14 CheXpert columns (1 / 0 / -1 / blank)
    OUT/images/s<study>/*.dcm   CR / DX, 12-16 bit, MONOCHROME1 / 2, some RLE / JPEG-LS / JPEG 2000
    OUT/notes/s<study>.txt  full report: INDICATION, HISTORY, FINDINGS, IMPRESSION
    OUT/locations.json      DICOM path -> finding -> box (x0, y0, x1, y1) in image fractions
    OUT/finding_sources.json   which findings the image shows, the note tells, or both

``layout="mimic"`` writes the MIMIC-CXR tree instead (``files/pXX/pNNNNNNNN/sNNNNNNNN/*.dcm`` and
``sNNNNNNNN.txt``, ``mimic-cxr-2.0.0-chexpert.csv``, ``-split.csv``, ``-metadata.csv``).

Some findings are visible only in the image, some only in the note, some in both, so a fused
model can beat either single modality. The DICOM headers hold fake patient names, IDs, birth
dates, accession numbers and institutions, so de-identification matters.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Literal

import numpy as np
from mmapps_domains.medical.demo_text import write_context, write_report
from mmapps_domains.medical.labels import CHEXPERT_FINDINGS

IMAGE_ONLY = ("Cardiomegaly", "Pleural Effusion", "Lung Lesion", "Pneumothorax")
NOTE_ONLY = ("Pneumonia", "Fracture", "Pleural Other", "Atelectasis")
BOTH = ("Edema", "Consolidation", "Support Devices", "Enlarged Cardiomediastinum")
_OPACITIES = ("Edema", "Consolidation", "Pneumonia", "Atelectasis", "Lung Lesion")
_SYNTAX_WEIGHTS = {"explicit_le": 0.45, "implicit_le": 0.1, "deflate": 0.05, "rle": 0.15, "jpegls": 0.12, "jpeg2000": 0.13}
_FIRST = ("Alice", "Bruno", "Chen", "Dana", "Emeka", "Fatima", "Giulia", "Hiro", "Ines", "Jonas", "Kofi", "Lena")
_LAST = ("Smith", "Okafor", "Rossi", "Tanaka", "Novak", "Garcia", "Muller", "Haddad", "Kowalski", "Silva")


def _draw_truth(rng: np.random.Generator, prevalence: float) -> dict[str, str]:
    """finding -> positive | uncertain | negative for the 12 drawn findings."""
    states = {}
    for finding in IMAGE_ONLY + NOTE_ONLY + BOTH:
        if rng.random() < prevalence:
            states[finding] = "uncertain" if rng.random() < 0.12 else "positive"
        else:
            states[finding] = "negative"
    return states


def _label_cells(rng: np.random.Generator, states: dict[str, str]) -> dict[str, str]:
    cells = {f: {"positive": "1.0", "uncertain": "-1.0"}.get(s, "0.0" if rng.random() < 0.4 else "") for f, s in states.items()}
    present = {f for f, s in states.items() if s != "negative"}
    cells["Lung Opacity"] = "1.0" if present & set(_OPACITIES) else ("0.0" if rng.random() < 0.4 else "")
    cells["No Finding"] = "" if present - {"Support Devices"} else "1.0"
    return cells


def _stored_from_brightness(rng: np.random.Generator, bright: np.ndarray, photometric: str) -> tuple[np.ndarray, dict]:
    """Brightness in [0, 1] -> stored values and the header fields that map them back."""
    bits = int(rng.choice([12, 14, 15, 16]))
    top = (1 << bits) - 1
    low, span = 0.08 * top, 0.84 * top
    stored = np.rint(low + bright * span)
    center, width = low + 0.5 * span, span * rng.uniform(0.95, 1.1)
    if photometric == "MONOCHROME1":
        stored, center = top - stored, top - center
    fields: dict = {"bits_stored": bits, "window": (center, width) if rng.random() < 0.85 else None}
    if rng.random() < 0.2 and fields["window"] is not None:  # modality LUT: values shifted by the intercept
        fields["rescale"] = (1.0, -1000.0)
        fields["window"] = (center - 1000.0, width)
    return np.clip(stored, 0, top).astype(np.uint16), fields


def write_demo_data(out: Path, n: int = 200, seed: int = 0, layout: Literal["manifest", "mimic"] = "manifest", prevalence: float = 0.2) -> Path:
    """Write ``n`` demo studies under ``out``.

    Args:
        out: output folder (created).
        n: number of studies (several per patient).
        seed: random seed; the same seed writes the same pixels, notes and labels.
        layout: ``"manifest"`` (manifest.csv + labels.csv) or ``"mimic"`` (MIMIC-CXR tree and CSVs).
        prevalence: probability of each drawn finding per study.

    Returns:
        The data root to give ``build_datasets`` (``out``).
    """
    from mmapps_domains.medical.dicom_write import XrayTags, write_xray_dicom
    from mmapps_domains.medical.phantom import render_frontal, render_lateral

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    syntaxes, weights = list(_SYNTAX_WEIGHTS), np.array(list(_SYNTAX_WEIGHTS.values()))
    manifest, label_rows, split_rows, meta_rows, locations = [], [], [], [], {}
    study_index, patient_index = 0, 0
    while study_index < n:
        subject_id = str(10000000 + 7919 * patient_index + int(rng.integers(0, 7000)))
        sex, age0 = ("F", "M")[int(rng.integers(0, 2))], int(rng.integers(22, 88))
        name = f"{_LAST[int(rng.integers(0, len(_LAST)))]}^{_FIRST[int(rng.integers(0, len(_FIRST)))]}"
        split = ("train", "train", "train", "validate", "test")[patient_index % 5]
        for visit in range(min(1 + int(rng.poisson(1.3)), 4, n - study_index)):
            study_id = str(50000000 + 1009 * study_index + int(rng.integers(0, 1000)))
            states = _draw_truth(rng, prevalence)
            visible = {f for f, s in states.items() if s != "negative" and f in IMAGE_ONLY + BOTH}
            age = age0 + visit
            folder = out / ("files" if layout == "mimic" else "images")
            study_dir = folder / f"p{subject_id[:2]}" / f"p{subject_id}" / f"s{study_id}" if layout == "mimic" else folder / f"s{study_id}"
            views = ["PA" if rng.random() < 0.6 else "AP"] + (["LL"] if rng.random() < 0.4 else [])
            paths = []
            for k, view in enumerate(views):
                h = int(rng.integers(112, 161)) * 2
                w = int(h * rng.uniform(0.85, 1.05)) // 2 * 2
                if view == "LL":
                    bright, boxes = render_lateral(rng, h, w, visible), {}
                else:
                    bright, boxes = render_frontal(rng, h, w, visible)
                photometric = "MONOCHROME1" if rng.random() < 0.4 else "MONOCHROME2"
                stored, fields = _stored_from_brightness(rng, bright, photometric)
                tags = XrayTags(
                    modality="CR" if rng.random() < 0.5 else "DX", photometric=photometric, view_position=view,
                    sex=sex, age=f"{age:03d}Y", patient_name=name, patient_id=f"MRN{subject_id}",
                    birth_date=f"{2024 - age0}0{int(rng.integers(1, 10))}1{int(rng.integers(0, 10))}",
                    accession=f"ACC{study_id}", institution="Demo General Hospital",
                    pixel_spacing=(round(430.0 / h, 4), round(430.0 / h, 4)),
                    burned_in=("NO", "NO", "NO", None)[int(rng.integers(0, 4))], **fields,
                )
                dicom_id = f"{study_id}-{k}-{view.lower()}"
                path = write_xray_dicom(study_dir / f"{dicom_id}.dcm", stored, tags, str(rng.choice(syntaxes, p=weights / weights.sum())))
                rel = path.relative_to(out).as_posix()
                paths.append(rel)
                if boxes:
                    locations[rel] = {f: [round(c, 4) for c in b] for f, b in boxes.items()}
                meta_rows.append({"dicom_id": dicom_id, "subject_id": subject_id, "study_id": study_id, "ViewPosition": view, "Rows": h, "Columns": w})
                split_rows.append({"dicom_id": dicom_id, "study_id": study_id, "subject_id": subject_id, "split": split})
            note_states = {f: states[f] for f in NOTE_ONLY + BOTH}
            indication, history = write_context(rng, note_states, age, sex)
            note_rel = ""
            if rng.random() >= 0.05:  # 5 % of studies have no note: the model must cope through masks
                note_path = (study_dir.parent / f"s{study_id}.txt") if layout == "mimic" else out / "notes" / f"s{study_id}.txt"
                note_path.parent.mkdir(parents=True, exist_ok=True)
                note_path.write_text(write_report(rng, indication, history, states))
                note_rel = note_path.relative_to(out).as_posix()
            label_rows.append({"subject_id": subject_id, "study_id": study_id, **_label_cells(rng, states)})
            manifest.append({"study_id": study_id, "subject_id": subject_id, "dicom_paths": ";".join(paths),
                             "note_path": note_rel, "note_kind": "report" if note_rel else ""})
            study_index += 1
        patient_index += 1
    _write_tables(out, layout, manifest, label_rows, split_rows, meta_rows)
    (out / "locations.json").write_text(json.dumps(locations, indent=1))
    sources = {"image_only": IMAGE_ONLY, "note_only": NOTE_ONLY, "both": BOTH, "derived": ("No Finding", "Lung Opacity")}
    (out / "finding_sources.json").write_text(json.dumps(sources, indent=1))
    return out


def _write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _write_tables(out: Path, layout: str, manifest: list, labels: list, splits: list, meta: list) -> None:
    label_columns = ["subject_id", "study_id", *CHEXPERT_FINDINGS]
    if layout == "mimic":
        _write_csv(out / "mimic-cxr-2.0.0-chexpert.csv", labels, label_columns)
        _write_csv(out / "mimic-cxr-2.0.0-split.csv", splits, ["dicom_id", "study_id", "subject_id", "split"])
        _write_csv(out / "mimic-cxr-2.0.0-metadata.csv", meta, ["dicom_id", "subject_id", "study_id", "ViewPosition", "Rows", "Columns"])
    else:
        _write_csv(out / "manifest.csv", manifest, ["study_id", "subject_id", "dicom_paths", "note_path", "note_kind"])
        _write_csv(out / "labels.csv", labels, label_columns)
