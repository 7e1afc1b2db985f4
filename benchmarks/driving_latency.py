"""Per-frame CPU inference latency of the driving detector (reading, preprocessing, model,
decoding + rotated NMS included) for each fusion, and the speed of the KITTI AP evaluation.

Usage: python benchmarks/driving_latency.py [--frames 20] [--recipe default]
Writes results/driving_latency.{json,md}. Models are untrained (latency does not depend on the weights,
except NMS, which sees the pre-NMS cap of boxes either way).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, table, write_results  # noqa: E402


def noisy_detections(records: list, copies: int, seed: int = 0) -> tuple[list, list]:
    """Ground truth of the frames and detections made from it (boxes jittered, random scores, 10 false positives a frame),
    so that the evaluation meets true positives at every score threshold, as with a trained model."""
    import numpy as np

    from mmapps_domains.driving.metrics import gt_annotation

    rng = np.random.default_rng(seed)
    gts, dts = [], []
    for _ in range(copies):
        for r in records:
            gt = gt_annotation(r.target)
            keep = gt["name"] != "DontCare"
            dt = {k: v[keep].copy() for k, v in gt.items()}
            dt["location"] = dt["location"] + rng.normal(0, 0.15, dt["location"].shape)
            fp = {k: v[:1].repeat(10, 0) if len(v) else v for k, v in dt.items()}
            if len(dt["name"]):
                fp["location"] = fp["location"] + rng.uniform(-15, 15, fp["location"].shape) * np.array([1, 0, 1])
                dt = {k: np.concatenate([dt[k], fp[k]]) for k in dt}
            dt["score"] = rng.uniform(0, 1, len(dt["name"]))
            gts.append(gt)
            dts.append(dt)
    return gts, dts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--recipe", default="default")
    parser.add_argument("--eval-copies", type=int, default=10, help="the evaluation runs on this many copies of the frames")
    args = parser.parse_args()

    import torch

    from mmapps.data import collate_samples
    from mmapps.workflows.resolve import resolve_config
    from mmapps_domains.driving import domain
    from mmapps_domains.driving.dataset import KittiDetectionDataset, data_options, index_frames
    from mmapps_domains.driving.demo import write_demo_data
    from mmapps_domains.driving.evaluation import kitti_eval
    from mmapps_domains.driving.model import build_model
    from mmapps_domains.driving.postprocess import postprocess
    from mmapps.data import IssueLog

    work = Path(tempfile.mkdtemp(prefix="mmapps-drv-lat-"))
    rows, payload = [], {"machine": machine(), "frames": args.frames}
    try:
        root = write_demo_data(work / "demo", n=args.frames, seed=0)
        layouts = {m.name: m.layout for m in domain.modalities}
        for fusion in domain.fusions:
            cfg = resolve_config(domain, args.recipe, extra={"data": {"root": str(root), "options": {"cache_frames": False}}, "model": {"fusion": {"name": fusion}}})
            options = data_options(cfg)
            dataset = KittiDetectionDataset(index_frames(root, "training", options, IssueLog()), options, train=False)
            model = build_model(cfg).eval()
            times, records = [], []
            with torch.no_grad():
                for i in range(len(dataset)):
                    start = time.perf_counter()
                    batch = collate_samples([dataset[i]], layouts)
                    pred = postprocess(model(batch)["objects"], batch)[0]
                    times.append(time.perf_counter() - start)
                    records.append(type("R", (), {"prediction": pred, "target": batch.targets["objects"][0]})())
            ms = [1000 * t for t in times[1:]]  # the first call warms up
            rows.append([fusion, statistics.median(ms), statistics.mean(ms)])
            payload[f"latency_ms/{fusion}"] = {"median": statistics.median(ms), "mean": statistics.mean(ms)}
        gts, dts = noisy_detections(records, copies=args.eval_copies)
        start = time.perf_counter()
        kitti_eval(gts, dts, ("Car", "Pedestrian", "Cyclist"))
        eval_s = time.perf_counter() - start
        n_det = sum(len(d["name"]) for d in dts)
        records = gts
        payload["ap_eval"] = {"frames": len(records), "detections": n_det, "seconds": eval_s}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    md = (f"# Driving: per-frame CPU latency and AP evaluation speed\n\nrecipe `{args.recipe}`, batch 1, {args.frames} demo frames, "
          f"torch threads {torch.get_num_threads()}; reading + preprocessing + model + decode/NMS per frame.\n\n"
          + table(["fusion", "median ms / frame", "mean ms / frame"], rows)
          + f"\n\nKITTI evaluation (bbox/BEV/3D/AOS x R40/R11 x 3 classes x 3 levels) on jittered ground truth plus 10 false positives a frame: "
          f"{len(records)} frames, {n_det} detections in {eval_s:.2f} s "
          f"({len(records) / eval_s:.1f} frames/s).\n\nmachine: {machine()}\n")
    path = write_results("driving_latency", payload, md)
    print(md)
    print(f"written {path}")


if __name__ == "__main__":
    main()
