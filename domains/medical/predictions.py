"""Prediction file: one CSV row per study (study_id, view, one probability column per finding).

No patient identifier (subject_id, names, dates) is written; studies are named by study_id.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Sequence

from mmapps_domains.medical.labels import CHEXPERT_FINDINGS


def write_findings_csv(records: dict[str, Sequence[Any]], out_dir: Path, labels: dict[str, Sequence[str]] | None = None) -> Path:
    """Write ``predictions.csv``.

    Args:
        records: task -> `PredictionRecord`s (the ``findings`` task is written).
        out_dir: folder.
        labels: task -> this run's label names (the ``findings`` list); default the 14 CheXpert
            findings (or ``label_j`` when the score count differs).

    Returns:
        The CSV path.
    """
    rows = list(records.get("findings", []))
    width = len(rows[0].prediction["scores"]) if rows else len(CHEXPERT_FINDINGS)
    names = list((labels or {}).get("findings") or CHEXPERT_FINDINGS)
    if len(names) != width:
        names = [f"label_{j}" for j in range(width)]
    path = Path(out_dir) / "predictions.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["study_id", "view", "n_images", *names])
        for r in rows:
            meta = r.meta or {}
            writer.writerow([r.sample_id, meta.get("view", ""), meta.get("n_images", ""), *(f"{p:.6f}" for p in r.prediction["scores"])])
    return path
