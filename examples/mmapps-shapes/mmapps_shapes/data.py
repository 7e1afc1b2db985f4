"""Demo-data writer and dataset reader of the `shapes` domain.

The data root holds ``samples.csv``, one row per sample: ``sample_id`` (unique), ``group_id``
(the unit kept in one split and resampled by the bootstrap CIs: patient, site, recording),
``split`` (train, val or test; empty means test, so ``predict`` on a folder without splits
predicts every row), ``image`` (a image file path relative to the root: .png, .jpg, .jpeg, .tif, .tiff), ``measurements_0`` .. ``measurements_5`` (numbers), and the targets (one ``label`` column holding a class name). A row without any target is
unlabelled: such rows are kept when the whole table is unlabelled (data to predict on), else
skipped. A bad row is reported to the `IssueLog` with the file, line and field (skipped and
counted, or fatal with ``--on-error stop``); an empty modality cell means that modality is absent.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from mmapps.data import DatasetSplits, IssueLog, Sample
from mmapps.errors import DataError
from mmapps_shapes import LABELS

IMAGE_SIZE = 32

FILES: dict[str, tuple[str, ...]] = {"image": (".png", ".jpg", ".jpeg", ".tif", ".tiff")}  # modality -> accepted suffixes of its files
TABULAR: dict[str, list[str]] = {"measurements": [f"measurements_{i}" for i in range(6)]}  # modality -> its columns
TARGET_COLUMNS = ["label"]
FIELDS = ["sample_id", "group_id", "split", *FILES, *(c for columns in TABULAR.values() for c in columns), *TARGET_COLUMNS]
SPLITS = ("train", "val", "test")


def write_demo_data(out: Path, n: int, seed: int = 0) -> Path:
    """Write `n` samples under `out` in the formats `build_datasets` reads; each modality is absent in about 5%."""
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(1234).normal(0.0, 1.0, (len(LABELS), 6))  # fixed: the same for every seed
    for folder in FILES:
        (out / folder).mkdir(parents=True, exist_ok=True)
    rows = []
    groups = (n + 1) // 2
    for i in range(n):
        signal, target_cells = demo_target(rng)
        place = (i // 2) / groups  # two samples per group, a group in one split
        row = {"sample_id": f"s{i:05d}", "group_id": f"g{i // 2:05d}", "split": "train" if place < 0.6 else "val" if place < 0.8 else "test"}
        absent = rng.random(2) < 0.05
        if absent.all():
            absent[0] = False
        row["image"] = "" if absent[0] else f"image/{i:05d}.png"
        if row["image"]:
            write_image(out / row["image"], signal, rng)
        features = signal @ mixing + rng.normal(0.0, 0.3, 6)
        row.update({c: "" if absent[1] else f"{v:.4f}" for c, v in zip(TABULAR["measurements"], features)})
        rows.append({**row, **target_cells})
    with (out / "samples.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return out


def demo_target(rng: np.random.Generator) -> tuple[np.ndarray, dict[str, str]]:
    """One class drawn uniformly: its one-hot vector drives the demo files."""
    label = int(rng.integers(len(LABELS)))
    return np.eye(len(LABELS))[label], {"label": LABELS[label]}


def write_image(path: Path, signal: np.ndarray, rng: np.random.Generator) -> None:
    """A 32x32 grayscale PNG: one bright square per target component, brightness = its value."""
    pixels = rng.normal(40.0, 20.0, (IMAGE_SIZE, IMAGE_SIZE))
    for k, value in enumerate(signal):
        row, col = divmod(k % 9, 3)
        pixels[2 + row * 10 : 10 + row * 10, 2 + col * 10 : 10 + col * 10] += 150.0 * float(value)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)


def parse_target(row: dict[str, str]) -> torch.Tensor | None:
    """The ``label`` column -> class index (an empty cell: unlabelled row)."""
    name = (row.get("label") or "").strip()
    if not name:
        return None
    if name not in LABELS:
        raise ValueError(f"label: found {name!r}, expected one of {', '.join(LABELS)}")
    return torch.tensor(LABELS.index(name))


def read_image(path: Path) -> torch.Tensor:
    """An image file -> (1, IMAGE_SIZE, IMAGE_SIZE) float32 in [0, 1] (converted to grayscale, resized)."""
    try:
        with Image.open(path) as image:
            image = image.convert("L").resize((IMAGE_SIZE, IMAGE_SIZE))
            pixels = np.asarray(image, dtype=np.float32) / 255.0
    except (OSError, ValueError) as err:  # Pillow raises these for truncated or unknown files
        raise ValueError(f"{path}: not a readable image ({err})") from None
    return torch.from_numpy(pixels).unsqueeze(0)


@dataclass
class Entry:
    """One checked row of ``samples.csv``: where its files are, its numbers and its target."""

    line: int
    sample_id: str
    group_id: str
    split: str
    files: dict[str, Path | None]
    features: dict[str, list[float] | None]
    target: torch.Tensor | None


READERS: dict[str, Callable[[Path], Any]] = {"image": read_image}


class ShapesDataset(torch.utils.data.Dataset):
    """The samples of one split; files are read when an item is loaded."""

    def __init__(self, entries: list[Entry]) -> None:
        self.entries = entries

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> Sample:
        entry = self.entries[index]
        inputs: dict[str, Any] = {m: _read(m, path) if path is not None else None for m, path in entry.files.items()}
        inputs.update({m: torch.tensor(values) if values is not None else None for m, values in entry.features.items()})
        targets = {"shape": entry.target} if entry.target is not None else {}
        return Sample(entry.sample_id, entry.group_id, inputs, targets)


def _read(modality: str, path: Path) -> Any:
    try:
        return READERS[modality](path)
    except (OSError, ValueError) as err:  # the file changed after indexing, or it is truncated
        raise DataError(f"{modality}: {err}") from None


def build_datasets(cfg: Any) -> DatasetSplits:
    """Index ``samples.csv`` under ``cfg.data.root`` (``cfg.data.options`` is a plain dict; this domain has none)."""
    root = Path(cfg.data.root)
    table = root / "samples.csv"
    if not table.is_file():
        raise DataError(f"{table}: not found; the shapes domain expects samples.csv with columns {', '.join(FIELDS)}")
    issues = IssueLog(cfg.data.on_error)
    with table.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in ("sample_id", "group_id", *FILES, *(c for cs in TABULAR.values() for c in cs)) if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{table}: missing column(s) {', '.join(missing)}; found {reader.fieldnames}; expected {', '.join(FIELDS)}")
        entries = [entry for line, row in enumerate(reader, start=2) if (entry := _index_row(root, f"{table}:{line}", line, row, issues))]
    entries = _unique(entries, table, issues)
    if any(entry.target is not None for entry in entries):
        for entry in entries:
            if entry.target is None:
                issues.report(f"{table}:{entry.line}", "target: every target cell is empty (unlabelled rows are used only when the whole table is unlabelled)")
        entries = [entry for entry in entries if entry.target is not None]
    by_split = {split: ShapesDataset([e for e in entries if e.split == split]) for split in SPLITS}
    return DatasetSplits(
        train=by_split["train"],
        val=by_split["val"],
        test=by_split["test"],
        issues=issues,
        split_of_group={e.group_id: e.split for e in entries},
        info={"rows used": len(entries)},
    )


def _index_row(root: Path, where: str, line: int, row: dict[str, str], issues: IssueLog) -> Entry | None:
    """Check one row (fields, suffixes, files, numbers, target); report the first problem and return None."""
    sample_id, group_id = (row.get("sample_id") or "").strip(), (row.get("group_id") or "").strip()
    if not sample_id or not group_id:
        issues.report(where, f"sample_id/group_id: found {sample_id!r}/{group_id!r}, both must be non-empty")
        return None
    split = (row.get("split") or "").strip() or "test"
    if split not in SPLITS:
        issues.report(where, f"split: found {split!r}, expected train, val, test or an empty cell (test)")
        return None
    files: dict[str, Path | None] = {}
    for modality, suffixes in FILES.items():
        cell = (row.get(modality) or "").strip()
        path = root / cell if cell else None
        if path is not None and path.suffix.lower() not in suffixes:
            issues.report(where, f"{modality}: {cell!r} has suffix {path.suffix or '(none)'!r}, expected one of {', '.join(suffixes)}")
            return None
        if path is not None and not path.is_file():
            issues.report(where, f"{modality}: file {cell!r} not found under {root}")
            return None
        files[modality] = path
    features: dict[str, list[float] | None] = {}
    for modality, columns in TABULAR.items():
        cells = [(row.get(c) or "").strip() for c in columns]
        try:
            features[modality] = [float(c) if c else float("nan") for c in cells] if any(cells) else None
        except ValueError:
            issues.report(where, f"{modality}: found {cells}, expected numbers (an empty cell: unknown)")
            return None
    if all(v is None for v in (*files.values(), *features.values())):
        issues.report(where, "inputs: every modality cell is empty")
        return None
    try:
        target = parse_target(row)
    except ValueError as err:
        issues.report(where, str(err))
        return None
    return Entry(line, sample_id, group_id, split, files, features, target)


def _unique(entries: list[Entry], table: Path, issues: IssueLog) -> list[Entry]:
    """Refuse a repeated sample id and a group found in two splits (it would leak between them)."""
    first_line: dict[str, int] = {}
    split_of_group: dict[str, tuple[str, int]] = {}
    kept = []
    for entry in entries:
        if entry.sample_id in first_line:
            issues.report(f"{table}:{entry.line}", f"sample_id: {entry.sample_id!r} repeats line {first_line[entry.sample_id]}")
            continue
        split, line = split_of_group.setdefault(entry.group_id, (entry.split, entry.line))
        if split != entry.split:
            issues.report(f"{table}:{entry.line}", f"group_id: {entry.group_id!r} is in {entry.split} here and in {split} on line {line}; a group stays in one split")
            continue
        first_line[entry.sample_id] = entry.line
        kept.append(entry)
    return kept
