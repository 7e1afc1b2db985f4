"""`mmapps medical train` at growing demo sizes: epoch time (linear in n?) and peak RSS (bounded in n?).

Each run is a new `mmapps medical train` subprocess on ``n`` demo studies (written once to the user
cache, like any demo run), a fixed number of epochs, a fresh preprocessed-sample cache folder (so
every run decodes every DICOM once, cold), no bootstrap. Measured per run: the epoch seconds the
trainer logs (``logs/metrics.csv``: training plus validation prediction), the command's wall and
CPU time, and the child's own peak RSS (``os.wait4``). Images per epoch second = (train + val
images, at most ``max_images`` per study) / epoch seconds; that rate extrapolates an epoch of
MIMIC-CXR (377,110 images) on this machine.

Linearity: seconds per 1000 images at each n relative to the smallest n (the baseline; 1.0 =
linear). Memory: peak RSS at each n relative to the smallest n. With ``--rounds`` > 1 the sizes are
run interleaved (n1 n2 n3 n1 n2 n3 ...), median and min per size.

    python benchmarks/medical_scale.py [--sizes 200 800 3200] [--epochs 1] [--recipe smoke] [--rounds 1]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, table, write_results

MIMIC_CXR_IMAGES = 377_110


def _train(n: int, epochs: int, recipe: str, work: Path, tag: str) -> dict:
    """One `mmapps medical train` subprocess; its own peak RSS from ``os.wait4``."""
    out = work / f"run-{tag}"
    cmd = [sys.executable, "-m", "mmapps", "medical", "train", "--recipe", recipe, "--out", str(out),
           "--set", f"data.demo_n={n}", "--set", f"train.epochs={epochs}", "--set", "train.patience=null",
           "--set", "eval.bootstrap_resamples=0", "--set", "train.progress=false", "--set", "train.tensorboard=false",
           "--set", f"cache.dir={work / f'cache-{tag}'}", "--set", "train.threads=2"]
    log = (work / f"{tag}.log").open("w")
    wall = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - wall
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"n={n}: train failed ({proc.returncode}); see {log.name}:\n" + Path(log.name).read_text()[-2000:])
    rows = list(csv.DictReader((out / "logs" / "metrics.csv").open()))
    epoch_s = [float(r["seconds"]) for r in rows]
    return {"n": n, "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024,
            "epoch_s": epoch_s, "epoch_mean_s": statistics.mean(epoch_s), "images": _epoch_images(out)}


def _epoch_images(run: Path) -> dict[str, int]:
    """Images per split of the run: subjects' splits from splits.json, images from the demo manifest (capped at max_images)."""
    import yaml

    data = yaml.safe_load((run / "config.yaml").read_text())["data"]
    cap = int((data.get("options") or {}).get("max_images", 2))
    split_of = json.loads((run / "splits.json").read_text())  # subject id -> split
    counts: dict[str, int] = {}
    with (Path(data["root"]) / "manifest.csv").open() as f:  # the resolved demo folder
        for row in csv.DictReader(f):
            split = split_of.get(row["subject_id"])
            if split:
                counts[split] = counts.get(split, 0) + min(len(row["dicom_paths"].split(";")), cap)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 800, 3200])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--recipe", default="smoke", help="medical recipe whose model is trained (smoke: small CNN at 48 px)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--name", default="medical_scale")
    args = parser.parse_args()
    runs: dict[int, list[dict]] = {n: [] for n in args.sizes}
    with tempfile.TemporaryDirectory(prefix="mmapps-scale-") as tmp:
        for r in range(args.rounds):
            for n in args.sizes:
                runs[n].append(_train(n, args.epochs, args.recipe, Path(tmp), f"{n}-{r}"))
                print(f"n={n}: {runs[n][-1]['epoch_mean_s']:.1f} s/epoch, peak RSS {runs[n][-1]['peak_rss_mb']:.0f} MB", flush=True)
                path = _write(args, {k: v for k, v in runs.items() if v})  # after every run: a cut-short benchmark keeps what it measured
    print(path.read_text())


def _write(args: argparse.Namespace, runs: dict[int, list[dict]]) -> Path:
    rows = []
    for n, rs in runs.items():
        images = sum(v for k, v in rs[0]["images"].items() if k in ("train", "val"))
        epoch = [r["epoch_mean_s"] for r in rs]
        rows.append({"n": n, "images_per_epoch": images, "train_images": rs[0]["images"].get("train", 0), "epoch_median_s": statistics.median(epoch),
                     "epoch_min_s": min(epoch), "wall_median_s": statistics.median(r["wall_s"] for r in rs), "cpu_median_s": statistics.median(r["cpu_s"] for r in rs),
                     "peak_rss_median_mb": statistics.median(r["peak_rss_mb"] for r in rs), "peak_rss_max_mb": max(r["peak_rss_mb"] for r in rs), "runs": rs})
    base = rows[0]
    for row in rows:
        row["s_per_1000_images"] = 1000 * row["epoch_median_s"] / row["images_per_epoch"]
        row["time_linearity_vs_smallest"] = row["s_per_1000_images"] / (1000 * base["epoch_median_s"] / base["images_per_epoch"])
        row["rss_vs_smallest"] = row["peak_rss_median_mb"] / base["peak_rss_median_mb"]
        row["images_per_s"] = row["images_per_epoch"] / row["epoch_median_s"]
    rate = rows[-1]["images_per_s"]
    mimic_h = MIMIC_CXR_IMAGES / rate / 3600
    md_rows = [[r["n"], r["images_per_epoch"], r["epoch_median_s"], r["epoch_min_s"], r["s_per_1000_images"], r["time_linearity_vs_smallest"],
                r["images_per_s"], r["wall_median_s"], r["cpu_median_s"], r["peak_rss_median_mb"], r["rss_vs_smallest"]] for r in rows]
    missing = [n for n in args.sizes if n not in runs]
    markdown = (
        f"# Medical training at scale\n\n`mmapps medical train --recipe {args.recipe}` on n demo studies, {args.epochs} epoch(s), a fresh "
        f"preprocessed-sample cache per run (every DICOM decoded once), no bootstrap, {args.rounds} round(s) per size"
        + (" interleaved across sizes" if args.rounds > 1 else "") + ". Epoch s = the trainer's epoch time (training + validation "
        "prediction); images per epoch = train + val images (at most max_images per study). Linearity = s per 1000 images relative to "
        f"n = {base['n']} (the baseline; 1.0 = linear); RSS = the child's own peak resident memory; command CPU s = the child's user + system time.\n\n"
        "```bash\npython benchmarks/medical_scale.py " + " ".join(sys.argv[1:]) + "\n```\n\n"
        + table(["n studies", "images / epoch", "epoch s (median)", "(min)", "s / 1000 images", "linearity vs smallest n", "images / s",
                 "command wall s", "command CPU s", "peak RSS MB", "RSS vs smallest n"], md_rows)
        + (f"\n\nNot measured (the run was cut short): n = {', '.join(map(str, missing))}." if missing else "")
        + f"\n\nAt {rate:.1f} images/s (n = {rows[-1]['n']}), one epoch over MIMIC-CXR's {MIMIC_CXR_IMAGES:,} images would take "
        f"{mimic_h:.1f} h on this machine with this model.\n\nMachine: {machine()}\n"
    )
    return write_results(args.name, {"machine": machine(), "command": sys.argv[1:], "recipe": args.recipe, "epochs": args.epochs,
                                     "mimic_cxr_images": MIMIC_CXR_IMAGES, "mimic_epoch_hours": mimic_h, "missing_sizes": missing, "rows": rows}, markdown)


if __name__ == "__main__":
    main()
