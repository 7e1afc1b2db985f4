"""Surveillance model on streams longer than its training clips: window AUC by time since the stream start.

The attention fusion's time positions are absolute (counted from the clip start); the demo trains
on 10 s clips. This writes demo recordings of ``--seconds`` s (same generator, events anywhere),
evaluates a checkpoint on them (scores equal ``watch``'s), and reports, per bucket of window start
time, the window-level ROC AUC (a window is positive when it overlaps an event) and the mean score
of negative windows. Baseline: the first bucket, [0, 10) s, i.e. the positions seen in training.

Usage: python benchmarks/surveillance_long_stream.py --checkpoint RUN/checkpoints/best.safetensors [--seconds 60] [--clips 24] [--label alibi]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, table, write_results  # noqa: E402

BUCKETS = ((0, 10), (10, 30), (30, 60), (60, 120), (120, 300), (300, 600))


def window_rows(root: Path, predictions: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(window start, max-over-classes score, overlaps-an-event) for every window of every clip."""
    manifest = {e["id"]: e for e in map(json.loads, (root / "manifest.jsonl").read_text().splitlines())}
    starts, scores, positive = [], [], []
    for line in predictions.read_text().splitlines():
        record = json.loads(line)
        segments = manifest[record["clip"]]["segments"]
        width = float(record["window_s"])
        score = np.max(np.array(list(record["scores"].values())), axis=0)  # (T,)
        for t, s in zip(record["window_starts"], score):
            starts.append(t)
            scores.append(s)
            positive.append(any(a < t + width and t < b for a, b, _ in segments))
    return np.array(starts), np.array(scores), np.array(positive)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--label", default="", help="suffix of the results file name (e.g. alibi)")
    args = parser.parse_args()

    from sklearn.metrics import roc_auc_score

    from mmapps.plugins import get_domain
    from mmapps.workflows.run import evaluate
    from mmapps_domains.surveillance.demo import write_demo_data

    work = Path(tempfile.mkdtemp(prefix="mmapps-long-stream-"))
    try:
        root = write_demo_data(work / "data", n=args.clips, seed=args.seed, duration=args.seconds)
        entries = [dict(json.loads(line), split="test") for line in (root / "manifest.jsonl").read_text().splitlines()]
        (root / "manifest.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))  # every clip is a test clip
        result = evaluate(args.checkpoint, get_domain("surveillance"), work / "eval", {"data": {"root": str(root)}})
        starts, scores, positive = window_rows(root, result.predictions)
        rows, payload = [], []
        for low, high in BUCKETS:
            inside = (starts >= low) & (starts < high)
            if not inside.any():
                continue
            pos, neg = positive & inside, ~positive & inside
            auc = float(roc_auc_score(positive[inside], scores[inside])) if pos.any() and neg.any() else float("nan")
            rows.append([f"[{low}, {high}) s", int(inside.sum()), int(pos.sum()), auc, float(scores[neg].mean()) if neg.any() else float("nan")])
            payload.append(dict(zip(("bucket", "windows", "positive", "window_auc", "mean_negative_score"), rows[-1])))
        markdown = (
            "# Surveillance: streams longer than the training clips\n\n"
            f"`python benchmarks/surveillance_long_stream.py --checkpoint {args.checkpoint} --seconds {args.seconds:g} --clips {args.clips}`: "
            f"{args.clips} demo recordings of {args.seconds:g} s (seed {args.seed}); whole-clip frame AUC {result.metrics.get('frame/auc', float('nan')):.3f}. "
            "Baseline: the [0, 10) s bucket, the positions the model saw in training.\n\n"
            + table(["window start", "windows", "positive", "window AUC", "mean score of negatives"], rows)
            + f"\n\nMachine: {machine()}\n"
        )
        write_results("surveillance_long_stream" + (f"_{args.label}" if args.label else ""), {"args": {k: str(v) for k, v in vars(args).items()}, "buckets": payload, "machine": machine()}, markdown)
        print(markdown)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
