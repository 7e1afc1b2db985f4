"""Per-epoch logs: a CSV file and TensorBoard event files (main process only)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any


class EpochLogger:
    """Append one row per epoch to ``logs/metrics.csv`` and the same scalars to TensorBoard."""

    def __init__(self, log_dir: Path, tensorboard: bool = True) -> None:
        self.csv_path = log_dir / "metrics.csv"
        log_dir.mkdir(parents=True, exist_ok=True)
        self._writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(log_dir / "tensorboard"))
            except ImportError:
                self._writer = None

    def log(self, epoch: int, row: dict[str, Any]) -> None:
        scalars = {k: v for k, v in row.items() if isinstance(v, (int, float))}
        existing = self._read_header()
        fields = existing or ["epoch", *scalars]
        write_header = not existing
        added = [k for k in scalars if k not in fields]
        if added:  # e.g. the first validation after epochs that did not validate (train.val_every_steps)
            self._rewrite([*fields, *added])
            fields = [*fields, *added]
        with self.csv_path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
            if write_header:
                writer.writeheader()
            writer.writerow({"epoch": epoch, **scalars})
        if self._writer is not None:
            for key, value in scalars.items():
                self._writer.add_scalar(key, value, epoch)
            self._writer.flush()

    def truncate_after(self, epoch: int) -> None:
        """On resume, drop rows of epochs after the checkpoint (they were never saved)."""
        if not self.csv_path.exists():
            return
        with self.csv_path.open() as handle:
            rows = list(csv.DictReader(handle))
        header = self._read_header()
        with self.csv_path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=header)
            writer.writeheader()
            writer.writerows(r for r in rows if int(r["epoch"]) <= epoch)

    def _rewrite(self, header: list[str]) -> None:
        """The file again under a wider `header` (earlier rows get empty cells for the new columns)."""
        with self.csv_path.open() as handle:
            rows = list(csv.DictReader(handle))
        with self.csv_path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=header)
            writer.writeheader()
            writer.writerows(rows)

    def _read_header(self) -> list[str] | None:
        if not self.csv_path.exists() or self.csv_path.stat().st_size == 0:
            return None
        with self.csv_path.open() as handle:
            return next(csv.reader(handle), None)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
