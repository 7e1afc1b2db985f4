"""Preprocessed-sample cache: data-loading time of epoch 1 (cold) vs epoch 2 (cache hits), model step excluded.

Builds the medical datasets with ``data.cache_dir`` set and ``validate_images`` off (so epoch 1
really decodes), then times iterating every training sample twice. Augmentation (random, after
the cache) runs in both epochs unless --no-augment.

Usage: python benchmarks/medical_cache.py [--n 120] [--size 128] [--no-augment]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path


def _epoch(dataset) -> float:
    start = time.perf_counter()
    for i in range(len(dataset)):
        dataset[i]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=120)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--no-augment", action="store_true")
    args = parser.parse_args()

    from mmapps.config import RunConfig
    from mmapps_domains.medical.dataset import build_datasets
    from mmapps_domains.medical.demo import write_demo_data

    work = Path(tempfile.mkdtemp(prefix="mmapps-med-cache-"))
    try:
        root = write_demo_data(work / "demo", n=args.n, seed=0)
        options = {"image_size": args.size, "validate_images": False, "augment": not args.no_augment}
        cfg = RunConfig(domain="medical", data={"root": root, "cache_dir": work / "cache", "options": options})
        train = build_datasets(cfg).train
        first, second, third = _epoch(train), _epoch(train), _epoch(train)
        result = {"samples": len(train), "epoch1_s": first, "epoch2_s": second, "epoch3_s": third,
                  "speedup_epoch2": first / second, "augment": not args.no_augment}
        print(f"{len(train)} samples: epoch 1 {first:.2f} s, epoch 2 {second:.2f} s, epoch 3 {third:.2f} s -> speed-up {first / second:.1f}x")
        print(json.dumps(result))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
