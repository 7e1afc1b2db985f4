"""Surveillance: how much frame AUC the window index alone gives (a shortcut any time-aware model can learn).

Reads a data root's manifest (clips with ``segments``), labels windows as training does, takes the
training split's positive rate per window index as the "score" of every test window, and reports
its test frame AUC. 0.5 means the index says nothing; the demo data written before events were cut
from a recording scored 0.86, as high as the trained models, because events sat 1.5 s or more
inside every clip. Run it on real data too: surveillance archives often trim clips around events.

Usage: python benchmarks/surveillance_position_prior.py [--data ROOT] [--demo-n 300]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, table, write_results  # noqa: E402


def clip_duration(entry: object) -> float:
    """The duration the container declares (header only, no decoding), else the last segment's end."""
    from mmapps_domains.surveillance.video import open_container, video_info

    container = open_container(entry.clip)
    try:
        declared = video_info(container, entry.clip).declared_duration
    finally:
        container.close()
    return declared or max([s.end for s in entry.segments] + [1.0])


def index_prior_auc(root: Path, classes: list[str], window_s: float = 1.0) -> dict[str, object]:
    """Train-split positive rate per window index, and its frame AUC on the test split."""
    from sklearn.metrics import roc_auc_score

    from mmapps.data import IssueLog
    from mmapps_domains.surveillance.annotations import read_manifest
    from mmapps_domains.surveillance.dataset import assign_split
    from mmapps_domains.surveillance.options import SurveillanceDataOptions
    from mmapps_domains.surveillance.windows import window_labels

    opts = SurveillanceDataOptions(classes=classes, window_s=window_s)
    by_split: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for entry in read_manifest(root, classes, IssueLog()):
        if entry.segments is None:
            continue
        n_windows = opts.window_spec().num_windows(clip_duration(entry))
        by_split[assign_split(entry, opts)].append(window_labels(entry.segments, n_windows, window_s, classes).max(1))
    longest = max(len(y) for ys in by_split.values() for y in ys)
    counts, positives = np.zeros(longest), np.zeros(longest)
    for y in by_split["train"]:
        counts[: len(y)] += 1
        positives[: len(y)] += y
    rate = positives / np.maximum(counts, 1)
    scores = np.concatenate([rate[: len(y)] for y in by_split["test"]])
    labels = np.concatenate(by_split["test"])
    return {"rate_per_index": rate.round(3).tolist(), "test_auc": float(roc_auc_score(labels, scores)), "clips": {s: len(v) for s, v in by_split.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="data root (default: the demo data, written once to the cache folder)")
    parser.add_argument("--demo-n", type=int, default=300)
    parser.add_argument("--classes", nargs="+", default=["fight", "fall", "intrusion"])
    args = parser.parse_args()

    from mmapps.workflows.resolve import cache_home, demo_folder_name, write_demo_once
    from mmapps_domains.surveillance import domain

    root = args.data or write_demo_once(domain, cache_home() / demo_folder_name(domain, args.demo_n), args.demo_n)
    result = index_prior_auc(root, args.classes)
    rows = [[i, r] for i, r in enumerate(result["rate_per_index"])]
    markdown = (
        f"# Surveillance: frame AUC of the window index alone\n\n`python benchmarks/surveillance_position_prior.py"
        f"{' --data ' + str(args.data) if args.data else f' --demo-n {args.demo_n}'}`; clips {result['clips']}.\n\n"
        f"Test frame AUC of the training split's positive rate per window index: **{result['test_auc']:.3f}** (0.5 = no shortcut).\n\n"
        + table(["window index", "train positive rate"], rows) + "\n"
    )
    name = "surveillance_position_prior" + ("" if args.data is None else "_" + Path(args.data).name)
    path = write_results(name, {"machine": machine(), "root": str(root), **result}, markdown)
    print(markdown)
    print(f"written: {path}")


if __name__ == "__main__":
    main()
