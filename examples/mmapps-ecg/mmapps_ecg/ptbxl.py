"""PTB-XL's index files: ``ptbxl_database.csv`` rows and ``scp_statements.csv`` -> labelled record rows."""

from __future__ import annotations

import ast
import csv
import math
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mmapps.data import IssueLog
from mmapps.errors import DataError

LEADS = ("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6")
FOLDS = {"train": range(1, 9), "val": (9,), "test": (10,)}


class EcgDataOptions(BaseModel):
    """``data.options`` of the ecg domain.

    Attributes:
        fs: 100 (``filename_lr``, records100/) or 500 (``filename_hr``, records500/).
        leads: lead names to read, in this order (case-insensitive match to the WFDB header).
        note_column: the ``ptbxl_database.csv`` column holding the triage note; a missing column
            leaves every note absent. PTB-XL's ``report`` is refused: it is the cardiologist's
            reading of this very ECG and states the diagnoses (label leakage).
        min_likelihood: a diagnostic SCP code counts when its likelihood is >= this (0 = every listed code).
        validate_records: read every record while indexing, so unreadable ones are skipped and
            counted before training (else they stop the run when first loaded).
        pos_weight: the multi-label loss's pos_weight: auto (negatives / positives on train), none, or a list.
    """

    model_config = ConfigDict(extra="forbid")

    fs: int = Field(100, description="100 or 500 Hz")
    leads: list[str] = Field(default_factory=lambda: list(LEADS))
    note_column: str = "triage_note"
    min_likelihood: float = Field(0.0, ge=0.0, le=100.0)
    validate_records: bool = True
    pos_weight: str | list[float] = "auto"

    @field_validator("fs")
    @classmethod
    def _known_rate(cls, value: int) -> int:
        if value not in (100, 500):
            raise ValueError("PTB-XL records are 100 Hz (records100/) or 500 Hz (records500/)")
        return value

    @field_validator("note_column")
    @classmethod
    def _no_report(cls, value: str) -> str:
        if value == "report":
            raise ValueError("'report' is the cardiologist's interpretation of the same ECG (it names the diagnoses): using it as input leaks the labels; give a column of notes written before the ECG was read")
        return value


@dataclass(frozen=True)
class EcgRow:
    """One usable record: ids, its split, the WFDB record path, the 5 targets and the note (or None)."""

    ecg_id: str
    group_id: str
    split: str
    record: Path
    targets: tuple[float, ...]
    note: str | None


def read_statements(root: Path) -> dict[str, str]:
    """``scp_statements.csv``: diagnostic SCP code -> its diagnostic superclass."""
    path = root / "scp_statements.csv"
    if not path.is_file():
        raise DataError(f"{path}: not found; the ecg domain reads PTB-XL's layout: ptbxl_database.csv, scp_statements.csv and records100/ (see examples/mmapps-ecg/README.md)")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        if "diagnostic_class" not in fields:
            raise DataError(f"{path}: no diagnostic_class column (found {fields[:8]}); expected PTB-XL's scp_statements.csv")
        code_column = fields[0]  # PTB-XL writes the code as the unnamed index column
        return {row[code_column]: row["diagnostic_class"] for row in reader if row.get("diagnostic_class")}


def read_rows(root: Path, options: EcgDataOptions, classes: tuple[str, ...], issues: IssueLog) -> tuple[list[EcgRow], dict[str, int]]:
    """Rows of ``ptbxl_database.csv``; bad rows go to `issues` (skipped or fatal by ``data.on_error``).

    A row with empty ``scp_codes`` is unlabelled (NaN targets: dropped from loss and metrics); one
    with an empty ``strat_fold`` goes to the test split, so ``predict`` covers records without folds.

    Returns:
        The rows and counts for the report (records without a diagnostic statement, without a note).
    """
    statements = read_statements(root)
    path = root / "ptbxl_database.csv"
    if not path.is_file():
        raise DataError(f"{path}: not found; the ecg domain reads PTB-XL's ptbxl_database.csv (ecg_id, patient_id, scp_codes, strat_fold, filename_lr/filename_hr)")
    file_column = "filename_lr" if options.fs == 100 else "filename_hr"
    rows, counts, patients, seen = [], {"no diagnostic statement": 0, "no note": 0}, {}, set()
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"ecg_id", "patient_id", "scp_codes", "strat_fold", file_column} - set(reader.fieldnames or [])
        if missing:
            raise DataError(f"{path}: missing column(s) {sorted(missing)}; found {(reader.fieldnames or [])[:10]}")
        for line, row in enumerate(reader, start=2):
            where = f"{path}:{line}"
            labelled = bool((row["scp_codes"] or "").strip())  # unlabelled rows (your own ECGs) are predicted, never trained on
            try:
                codes = ast.literal_eval(row["scp_codes"]) if labelled else {}  # PTB-XL writes a Python dict literal; literal_eval runs no code
                if not isinstance(codes, dict) or not all(isinstance(v, (int, float)) for v in codes.values()):
                    raise ValueError
            except (ValueError, SyntaxError):
                issues.report(where, f"scp_codes: found {row['scp_codes']!r}; expected a dict of SCP code -> likelihood like {{'NORM': 100.0}}, or empty for an unlabelled record")
                continue
            fold_text = (row["strat_fold"] or "").strip()
            split = "test" if not fold_text else next((name for name, folds in FOLDS.items() if fold_text in {str(f) for f in folds} | {f"{f}.0" for f in folds}), None)
            if split is None:
                issues.report(where, f"strat_fold: found {fold_text!r}, expected 1-10 (or empty: the record is predicted under --split test)")
                continue
            present = {statements[c] for c, likelihood in codes.items() if c in statements and float(likelihood) >= options.min_likelihood}
            if labelled and not present & set(classes):
                counts["no diagnostic statement"] += 1
                continue
            note = (row.get(options.note_column) or "").strip() or None
            counts["no note"] += note is None
            patient = patients.setdefault(row["patient_id"], f"patient-{len(patients):05d}")  # never the source id
            targets = tuple((1.0 if c in present else 0.0) if labelled else math.nan for c in classes)
            ecg_id = (row["ecg_id"] or "").strip().removesuffix(".0")
            if not ecg_id.isdigit() or ecg_id in seen:
                issues.report(where, f"ecg_id: found {row['ecg_id']!r}; expected a whole number{' not used by an earlier row' if ecg_id in seen else ''}")
                continue
            seen.add(ecg_id)
            rows.append(EcgRow(f"ecg{int(ecg_id):05d}", patient, split, root / row[file_column], targets, note))
    return rows, counts
