"""The ecg domain's dataset reader and prediction writer."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmapps.data import DatasetSplits, IssueLog, Sample
from mmapps.readers.signal import SignalReadError, read_signal
from mmapps_ecg import SUPERCLASSES
from mmapps_ecg.ptbxl import EcgDataOptions, EcgRow, read_rows


class EcgDataset(torch.utils.data.Dataset):
    """Records of one split: ECG ``(S, 12)`` float32 in mV (time first), the note or None, 5 targets."""

    def __init__(self, rows: list[EcgRow], options: EcgDataOptions) -> None:
        self.rows, self.options = rows, options

    def __len__(self) -> int:
        return len(self.rows)

    def task_targets(self, task: str) -> np.ndarray:
        """``(N, 5)`` targets from the index, without reading a record (pos_weight=auto)."""
        return np.array([r.targets for r in self.rows], dtype=float).reshape(len(self.rows), len(SUPERCLASSES))

    def __getitem__(self, index: int) -> Sample:
        row = self.rows[index]
        record = read_signal(row.record, fs=self.options.fs, channels=self.options.leads)
        inputs: dict[str, Any] = {"ecg": torch.from_numpy(record.data), "note": row.note}
        return Sample(row.ecg_id, row.group_id, inputs, {"diagnosis": torch.tensor(row.targets, dtype=torch.float32)})


def build_datasets(cfg: Any) -> DatasetSplits:
    """PTB-XL's layout under ``cfg.data.root``; unreadable records and bad rows are skipped and counted (or stop the run)."""
    root = Path(cfg.data.root)
    options = EcgDataOptions.model_validate(cfg.data.options or {})
    issues = IssueLog(cfg.data.on_error)
    rows, counts = read_rows(root, options, SUPERCLASSES, issues)
    usable = []
    expected = 10 * options.fs
    for row in rows:
        if not options.validate_records:
            usable.append(row)
            continue
        try:
            record = read_signal(row.record, fs=options.fs, channels=options.leads)
        except SignalReadError as err:
            issues.report(row.record, str(err).removeprefix(f"{row.record}: "))
            continue
        if record.data.shape[0] != expected:
            issues.report(row.record, f"record length: {record.data.shape[0]} samples, expected {expected} (10 s at {options.fs} Hz)")
            continue
        usable.append(row)
    by_split = {name: [r for r in usable if r.split == name] for name in ("train", "val", "test")}
    info = {f"records without a {', '.join(SUPERCLASSES)} statement (not used)": counts["no diagnostic statement"], "records without a note": counts["no note"]}
    return DatasetSplits(
        train=EcgDataset(by_split["train"], options),
        val=EcgDataset(by_split["val"], options),
        test=EcgDataset(by_split["test"], options),
        issues=issues,
        split_of_group={r.group_id: r.split for r in usable},
        info=info,
    )


def write_predictions(records: dict[str, list[Any]], out_dir: Path, labels: dict[str, list[str]] | None = None) -> Path:
    """``predictions.csv``: one row per ECG with a probability per superclass (records arrive grouped by task)."""
    names = (labels or {}).get("diagnosis") or list(SUPERCLASSES)
    path = Path(out_dir) / "predictions.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ecg_id", *(f"p_{n}" for n in names)])
        for r in records.get("diagnosis", []):
            writer.writerow([r.sample_id, *(f"{p:.6f}" for p in r.prediction["scores"])])
    return path
