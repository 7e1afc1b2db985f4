"""Preprocessed-sample cache: data-loading time of epoch 1 (cold) vs epoch 2 (cache hits), model step excluded.

Builds the medical datasets with ``data.cache_dir`` set and ``validate_images`` off (so epoch 1
really decodes), then times iterating every training sample twice. Augmentation (random, after
the cache) runs in both epochs unless --no-augment.

Usage: python benchmarks/medical_cache.py [--n 120] [--size 128] [--no-augment]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, table, write_results  # noqa: E402


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
        flag = " --no-augment" if args.no_augment else ""
        markdown = (
            "# Preprocessed-sample cache: data loading per epoch\n\n"
            f"`python benchmarks/medical_cache.py --n {args.n} --size {args.size}{flag}`: every training sample read once "
            "per epoch (decode + preprocessing, then augmentation, which is random and runs after the cache); the model "
            "step is not included. Baseline: epoch 1, which decodes and fills the cache.\n\n"
            + table(["samples", "epoch 1 s", "epoch 2 s", "epoch 3 s", "speed-up epoch 2 vs 1"], [[len(train), first, second, third, first / second]])
            + f"\n\nMachine: {machine()}\n"
        )
        write_results("medical_cache" + ("_no_augment" if args.no_augment else ""), {"args": vars(args), **result, "machine": machine()}, markdown)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
