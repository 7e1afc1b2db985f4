"""Preprocessed-sample cache: warm reads in a new run vs MONAI PersistentDataset, and cold vs warm `mmapps medical train`.

Part 1, warm read in a new run. Both caches are filled once with the same files; then each round
builds a *new* reader (a new run: no in-process memo) and reads every file: mmapps'
`build_cached_preprocess` (stat key + signed safetensors entry) against MONAI
``PersistentDataset`` with ``LoadImaged(reader="PydicomReader") + EnsureChannelFirstd + Resized +
SpatialPadd + NormalizeIntensityd`` (the same geometry; MONAI stores torch-pickled MetaTensors
loaded with ``weights_only=True``). Files: the demo DICOM phantoms, and the real CR radiographs of
pydicom-data (RG1/RG3, uncompressed and JPEG 2000, ~1.8k px), each copied ``--copies`` times
under distinct paths so both caches hold one entry per path.

Part 2, `mmapps medical train --recipe smoke` as a subprocess (a new run each time) with the cache
off (``cache.enabled=false``, the old default: every epoch decodes every DICOM again) against a
warm cache folder: command wall and CPU time, and the mean epoch seconds from ``logs/metrics.csv``;
plus one cold run (a fresh folder, whose indexing decode fills the cache for the epochs).

Rounds alternate A B A B ... in one process (>= 7), median and min of wall and CPU time per round.
Writes ``benchmarks/results/medical_cache.{json,md}`` (part 1) and ``medical_cache_train.{json,md}`` (part 2).

Usage: python benchmarks/medical_cache.py [--n 60] [--size 128] [--copies 4] [--rounds 7] [--train-rounds 7] [--train-n 40] [--train-epochs 3]
"""

from __future__ import annotations

import argparse
import csv
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, table, write_results  # noqa: E402

REAL_CR = ("RG1_UNCR.dcm", "RG1_J2KR.dcm", "RG3_UNCR.dcm", "RG3_J2KR.dcm")


def _timed(fn: Callable[[], None]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _summary(samples: list[tuple[float, float]], per: int = 1) -> dict[str, float]:
    walls, cpus = [w / per for w, _ in samples], [c / per for _, c in samples]
    return {"wall_median": statistics.median(walls), "wall_min": min(walls), "cpu_median": statistics.median(cpus), "cpu_min": min(cpus)}


def _abab(a: Callable[[], None], b: Callable[[], None], rounds: int) -> tuple[list, list]:
    runs_a, runs_b = [], []
    for _ in range(rounds):
        runs_a.append(_timed(a))
        runs_b.append(_timed(b))
    return runs_a, runs_b


def warm_reads(files: list[Path], size: int, work: Path, rounds: int) -> dict:
    """Part 1 on one file set: per-image wall/CPU of a new run's reads, mmapps vs PersistentDataset."""
    from mmapps_domains.medical.cache import build_cached_preprocess
    from mmapps_domains.medical.options import parse_options
    from monai.data import PersistentDataset
    from monai.transforms import (
        Compose,
        EnsureChannelFirstd,
        LoadImaged,
        NormalizeIntensityd,
        Resized,
        SpatialPadd,
    )

    from mmapps.config import RunConfig

    options = parse_options({"image_size": size})
    cfg = RunConfig(domain="medical", data={"options": {"image_size": size}}, cache={"dir": work / "mmapps"})
    transform = Compose([LoadImaged("image", reader="PydicomReader", image_only=True), EnsureChannelFirstd("image"),
                         Resized("image", spatial_size=size, size_mode="longest", mode="area"), SpatialPadd("image", (size, size)), NormalizeIntensityd("image")])
    items = [{"image": str(p)} for p in files]
    fill = build_cached_preprocess(cfg, options)
    cold_ours = _timed(lambda: [fill(p) for p in files])
    cold_monai = _timed(lambda: [PersistentDataset(items, transform, cache_dir=work / "monai")[i] for i in range(len(items))])
    stats = []

    def ours() -> None:
        load = build_cached_preprocess(cfg, options)  # a new run: new cache object, empty memos
        for p in files:
            assert load(p)[0].shape == (1, size, size)
        assert load.cache.stats.misses == 0
        stats.append(load.cache.stats)

    def monai() -> None:
        dataset = PersistentDataset(items, transform, cache_dir=work / "monai")
        for i in range(len(dataset)):
            assert tuple(dataset[i]["image"].shape) == (1, size, size)

    runs_ours, runs_monai = _abab(ours, monai, rounds)
    a, b = _summary(runs_ours, len(files)), _summary(runs_monai, len(files))
    return {"images": len(files), "mmapps": a, "monai": b, "ratio_wall_median": b["wall_median"] / a["wall_median"],
            "ratio_wall_min": b["wall_min"] / a["wall_min"], "ratio_cpu_median": b["cpu_median"] / a["cpu_median"],
            "cold_fill_s": {"mmapps": cold_ours[0], "monai": cold_monai[0]}, "rounds": rounds}


def _train(demo: Path, out: Path, epochs: int, *overrides: str) -> tuple[float, float, float]:
    """One `mmapps medical train --recipe smoke` subprocess: (wall s, CPU s of the child, mean epoch s)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "mmapps", "medical", "train", "--recipe", "smoke", "--data", str(demo), "--out", str(out),
           "--set", "train.progress=false", "--set", "train.tensorboard=false", "--set", f"train.epochs={epochs}"]
    proc = subprocess.run(cmd + [a for o in overrides for a in ("--set", o)], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"train failed ({proc.returncode}): {proc.stderr[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    rows = list(csv.DictReader((out / "logs" / "metrics.csv").open()))
    return wall, cpu, statistics.mean(float(r["seconds"]) for r in rows)


def train_rounds(demo: Path, work: Path, rounds: int, epochs: int) -> dict:
    """Part 2: `cache.enabled=false` (the old default: every epoch decodes) vs a warm cache, alternated; plus one cold run."""
    warm_dir = work / "train-cache"
    cold = _train(demo, work / "run-cold", epochs, f"cache.dir={warm_dir}")  # fills the folder
    off, warm = [], []
    for r in range(rounds):
        off.append(_train(demo, work / f"run-off-{r}", epochs, "cache.enabled=false"))
        warm.append(_train(demo, work / f"run-warm-{r}", epochs, f"cache.dir={warm_dir}"))
    pick = lambda runs, i: [run[i] for run in runs]  # noqa: E731
    out = {"cold_once": {"wall": cold[0], "cpu": cold[1], "epoch_mean": cold[2]}, "rounds": rounds, "epochs": epochs}
    for label, runs in (("off", off), ("warm", warm)):
        out[label] = {"wall_median": statistics.median(pick(runs, 0)), "wall_min": min(pick(runs, 0)), "cpu_median": statistics.median(pick(runs, 1)),
                      "cpu_min": min(pick(runs, 1)), "epoch_median": statistics.median(pick(runs, 2)), "epoch_min": min(pick(runs, 2))}
    return out


def _real_files(work: Path, copies: int) -> list[Path]:
    from pydicom.data import get_testdata_file

    folder = work / "real"
    folder.mkdir()
    files = []
    for name in REAL_CR:
        source = Path(get_testdata_file(name))
        for k in range(copies):
            target = folder / f"{k}_{name}"
            shutil.copyfile(source, target)
            files.append(target)
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60, help="demo studies for the warm-read part")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--copies", type=int, default=4, help="copies of each real CR file")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--train-rounds", type=int, default=7, help="0 skips the train part")
    parser.add_argument("--train-n", type=int, default=40, help="demo studies for the train part")
    parser.add_argument("--train-epochs", type=int, default=3)
    args = parser.parse_args()
    import os

    from mmapps_domains.medical.demo import write_demo_data

    work = Path(tempfile.mkdtemp(prefix="mmapps-med-cache-"))
    os.environ.setdefault("MMAPPS_CACHE_KEY_FILE", str(work / "key" / "cache.key"))  # never the user's own key
    try:
        demo = write_demo_data(work / "demo", n=args.n, seed=0)
        sets = {"demo": sorted(demo.glob("images/*/*.dcm")), "real_cr": _real_files(work, args.copies)}
        reads = {label: warm_reads(files, args.size, work / label, args.rounds) for label, files in sets.items()}
        for label, r in reads.items():
            print(f"{label}: {r['images']} images, mmapps {r['mmapps']['wall_median'] * 1e3:.3f} ms/img, MONAI {r['monai']['wall_median'] * 1e3:.3f} ms/img, ratio {r['ratio_wall_median']:.1f}x")
        write_results("medical_cache", {"args": vars(args), "warm_read": reads, "machine": machine()}, _markdown(args, reads, None))
        if args.train_rounds:  # written separately: a failed train run never loses the warm-read table
            train_demo = write_demo_data(work / "train-demo", n=args.train_n, seed=0)
            train = train_rounds(train_demo, work, args.train_rounds, args.train_epochs)
            print(f"train cache off {train['off']['wall_median']:.1f} s, warm {train['warm']['wall_median']:.1f} s, cold once {train['cold_once']['wall']:.1f} s")
            write_results("medical_cache_train", {"args": vars(args), "train": train, "machine": machine()}, _markdown(args, {}, train))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _markdown(args: argparse.Namespace, reads: dict, train: dict | None) -> str:
    ms = lambda v: v * 1e3  # noqa: E731
    rows = [[label, r["images"], ms(r["mmapps"]["wall_median"]), ms(r["mmapps"]["wall_min"]), ms(r["mmapps"]["cpu_median"]),
             ms(r["monai"]["wall_median"]), ms(r["monai"]["wall_min"]), ms(r["monai"]["cpu_median"]), r["ratio_wall_median"], r["ratio_wall_min"], r["ratio_cpu_median"]]
            for label, r in reads.items()]
    if not reads:
        text = "# Preprocessed-sample cache in `mmapps medical train`\n\n" + f"`python benchmarks/medical_cache.py --train-rounds {args.train_rounds} --train-n {args.train_n} --train-epochs {args.train_epochs}`."
    else:
        text = (
        "# Preprocessed-sample cache\n\n"
        f"`python benchmarks/medical_cache.py --n {args.n} --size {args.size} --copies {args.copies} --rounds {args.rounds} "
        f"--train-rounds {args.train_rounds} --train-n {args.train_n} --train-epochs {args.train_epochs}`; rounds alternated A B A B in one process.\n\n"
        "## Warm read in a new run vs MONAI PersistentDataset (goal >= 10x)\n\n"
        "Per image, each round a new reader over caches filled beforehand. Baseline: MONAI `PersistentDataset` with "
        "LoadImaged(PydicomReader) + EnsureChannelFirstd + Resized + SpatialPadd + NormalizeIntensityd. mmapps: "
        "`build_cached_preprocess` (stat key, HMAC-SHA256-checked safetensors entry).\n\n"
        + table(["files", "images", "mmapps ms/img median", "min", "CPU ms", "MONAI ms/img median", "min", "CPU ms",
                 "speed-up (median)", "speed-up (min)", "CPU speed-up"], rows)
        )
    if train:
        o, w, c = train["off"], train["warm"], train["cold_once"]
        text += (
            f"\n\n## `mmapps medical train --recipe smoke`, {train['epochs']} epochs: cache off (the old default) vs warm cache\n\n"
            f"Each run a subprocess on {args.train_n} demo studies. Baseline: `cache.enabled=false`, where every epoch decodes every "
            "DICOM again. Warm: a `cache.dir` filled by an earlier run. Epoch s: the mean over the run's epochs (logs/metrics.csv). "
            f"One cold run (fresh folder; its indexing decode fills the cache and the epochs reuse it): {c['wall']:.1f} s wall, "
            f"{c['cpu']:.1f} s CPU, {c['epoch_mean']:.2f} s per epoch.\n\n"
            + table(["cache", "command wall s median", "min", "CPU s median", "epoch s median", "min"],
                    [["off", o["wall_median"], o["wall_min"], o["cpu_median"], o["epoch_median"], o["epoch_min"]],
                     ["warm", w["wall_median"], w["wall_min"], w["cpu_median"], w["epoch_median"], w["epoch_min"]]])
            + f"\n\nEpoch speed-up warm vs off: {o['epoch_median'] / w['epoch_median']:.2f}x (median), command {o['wall_median'] / w['wall_median']:.2f}x.\n"
        )
    return text + f"\n\nMachine: {machine()}\n"


if __name__ == "__main__":
    main()
