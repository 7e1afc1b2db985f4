"""Surveillance ``watch`` with a bounded key/value ring buffer vs an effectively unbounded one, on long streams.

Writes ``--clips`` demo recordings of ``--seconds`` s (events anywhere), streams each once through
`watch`'s PyTorch scorer with ring capacities ``--contexts`` (windows) and once with a capacity
larger than the stream (= the former unbounded cache), and reports per capacity: the largest
score difference before the capacity is reached (should be float noise) and after it, the mean
difference after it, and the window ROC AUC (a window is positive when it overlaps an event).

Usage: python benchmarks/surveillance_ring_buffer.py --checkpoint RUN/checkpoints/best.safetensors [--seconds 120] [--clips 3] [--contexts 10 30 60]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--clips", type=int, default=3)
    parser.add_argument("--contexts", type=int, nargs="+", default=[10, 30, 60])
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    import torch
    from sklearn.metrics import roc_auc_score

    from mmapps.models.build import selected_modalities
    from mmapps_domains.surveillance.demo import write_demo_data
    from mmapps_domains.surveillance.streaming import StreamingScorer
    from mmapps_domains.surveillance.watch import load_trained, window_batches

    torch.set_num_threads(1)
    cfg, domain, model = load_trained(args.checkpoint)
    modalities = selected_modalities(cfg, domain)
    work = Path(tempfile.mkdtemp(prefix="mmapps-ring-"))
    try:
        root = write_demo_data(work / "data", n=args.clips, seed=args.seed, duration=args.seconds)
        capacities = [*args.contexts, 10**6]
        scores: dict[int, list[np.ndarray]] = {c: [] for c in capacities}
        positive = []
        for line in (root / "manifest.jsonl").read_text().splitlines():
            row = json.loads(line)
            batches = [b for _, b in window_batches(root / row["clip"], cfg, domain, modalities, root / row["audio"] if row.get("audio") else None,
                                                    root / row["chat"] if row.get("chat") else None, row.get("start_time"))]
            for c in capacities:
                scorer = StreamingScorer(model, max_context=c)
                scores[c].append(np.stack([torch.sigmoid(scorer.step(b)).numpy() for b in batches]))  # (W, C)
            width = float(cfg.data.options.get("window_s", 1.0))
            positive.append(np.array([any(a < t * width + width and t * width < b for a, b, _ in row.get("segments") or []) for t in range(len(batches))]))
        unbounded = scores[10**6]
        pos = np.concatenate(positive)
        rows, payload = [], []
        for c in capacities:
            before = max(float(np.abs(s[:c] - u[:c]).max(initial=0.0)) for s, u in zip(scores[c], unbounded))
            after = [np.abs(s[c:] - u[c:]) for s, u in zip(scores[c], unbounded)]
            after_max = max((float(a.max()) for a in after if a.size), default=0.0)
            after_mean = float(np.concatenate([a.ravel() for a in after]).mean()) if any(a.size for a in after) else 0.0
            top = np.concatenate([s.max(1) for s in scores[c]])
            auc = float(roc_auc_score(pos, top)) if pos.any() and (~pos).any() else float("nan")
            label = "unbounded (capacity > stream)" if c == 10**6 else str(c)
            rows.append([label, before, after_max, after_mean, auc])
            payload.append({"capacity": label, "max_diff_before_capacity": before, "max_diff_after": after_max, "mean_diff_after": after_mean, "window_auc": auc})
        markdown = (
            "# Surveillance watch: ring-buffer capacity vs the unbounded cache on long streams\n\n"
            f"`python benchmarks/surveillance_ring_buffer.py --checkpoint {args.checkpoint} --seconds {args.seconds:g} --clips {args.clips} --contexts {' '.join(map(str, args.contexts))}`: "
            f"{args.clips} demo recordings of {args.seconds:g} s (seed {args.seed}); score = per-class probability. Baseline: the unbounded row.\n\n"
            + table(["capacity (windows)", "max |d| before capacity", "max |d| after", "mean |d| after", "window AUC"], rows)
            + f"\n\nMachine: {machine()}\n"
        )
        write_results("surveillance_ring_buffer", {"args": {k: str(v) for k, v in vars(args).items()}, "rows": payload, "machine": machine()}, markdown)
        print(markdown)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
