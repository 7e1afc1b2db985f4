"""Demo-data writer and dataset reader of the `shapes` domain."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from mmapps.data import DatasetSplits, IssueLog, Sample

FIELDS = ["sample_id", "group_id", "split", "image", "label", "f0", "f1", "f2", "f3", "f4", "f5"]


def write_demo_data(out: Path, n: int, seed: int = 0) -> Path:
    """Write `n` samples: ``images/*.png`` and ``samples.csv``; about 5% lack their image."""
    rng = np.random.default_rng(seed)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        label = int(rng.integers(0, 4))
        angular, large = label // 2, label % 2
        image_name = f"images/{i:05d}.png" if rng.random() > 0.05 else ""
        if image_name:
            _draw(angular, rng).save(out / image_name)
        size = 1.0 + large + rng.normal(0, 0.25)
        features = [size, size * 2 + rng.normal(0, 0.3)] + rng.normal(0, 1, 4).round(4).tolist()
        split = "train" if i < 0.6 * n else "val" if i < 0.8 * n else "test"
        rows.append([f"s{i:05d}", f"g{i // 2:05d}", split, image_name, label] + [round(float(f), 4) for f in features])
    with (out / "samples.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(FIELDS)
        writer.writerows(rows)
    return out


def _draw(angular: int, rng: np.random.Generator) -> Image.Image:
    image = Image.new("L", (32, 32), 0)
    draw = ImageDraw.Draw(image)
    cx, cy, r = rng.integers(11, 21), rng.integers(11, 21), rng.integers(6, 10)
    if angular:
        draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=255)
    else:
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, 20, (32, 32))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


class ShapesDataset(torch.utils.data.Dataset):
    """Samples of one split: image (1, 32, 32) in [0, 1] or None, six measurements, class index."""

    def __init__(self, root: Path, rows: list[dict[str, str]]) -> None:
        self.root, self.rows = root, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> Sample:
        row = self.rows[index]
        image = None
        if row["image"]:
            pixels = np.asarray(Image.open(self.root / row["image"]).convert("L"), dtype=np.float32) / 255.0
            image = torch.from_numpy(pixels).unsqueeze(0)
        features = torch.tensor([float(row[f"f{i}"]) for i in range(6)])
        return Sample(row["sample_id"], row["group_id"], {"image": image, "measurements": features}, {"shape": torch.tensor(int(row["label"]))})


def build_datasets(cfg) -> DatasetSplits:
    """Read ``samples.csv`` under ``cfg.data.root``; rows with a bad label or a missing image file are skipped (or stop the run)."""
    root = Path(cfg.data.root)
    table = root / "samples.csv"
    if not table.is_file():
        from mmapps.errors import DataError

        raise DataError(f"{table}: not found; the shapes domain expects samples.csv with columns {', '.join(FIELDS)}")
    issues = IssueLog(cfg.data.on_error)
    splits: dict[str, list[dict[str, str]]] = {"train": [], "val": [], "test": []}
    with table.open() as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            if row.get("label") not in {"0", "1", "2", "3"}:
                issues.report(f"{table}:{line}", f"label: found {row.get('label')!r}, expected 0, 1, 2 or 3")
                continue
            if row["image"] and not (root / row["image"]).is_file():
                issues.report(root / row["image"], "image file not found")
                continue
            splits.setdefault(row["split"], []).append(row)
    return DatasetSplits(
        train=ShapesDataset(root, splits["train"]),
        val=ShapesDataset(root, splits["val"]),
        test=ShapesDataset(root, splits["test"]),
        issues=issues,
        split_of_group={r["group_id"]: name for name, rows in splits.items() for r in rows},
    )
