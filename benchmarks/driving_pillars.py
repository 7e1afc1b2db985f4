"""Pillarisation throughput: mmapps' torch `pillarise` vs a vectorised NumPy reference of the same
operation on the same clouds (pillar keys, unique, per-pillar means, 9 decorated features per point),
with open3d's `voxel_down_sample` on the same points for scale (a different, simpler operation:
one averaged point per voxel, no per-point features).

Usage: python benchmarks/driving_pillars.py [--frames 20] [--repeats 3] [--pillar 0.16]
Prints points/s for each and the ratio torch / NumPy; writes results/driving_pillars.{json,md}.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, table, write_results  # noqa: E402

POINT_RANGE = (0.0, -39.68, -3.0, 69.12, 39.68, 1.0)


def pillarise_numpy(points: np.ndarray, batch: np.ndarray, pr: tuple[float, ...], size: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same pillarisation as `mmapps_domains.driving.preprocess.pillarise`, in NumPy."""
    ny, nx = int(round((pr[4] - pr[1]) / size)), int(round((pr[3] - pr[0]) / size))
    ix = np.floor((points[:, 0] - pr[0]) / size).astype(np.int64)
    iy = np.floor((points[:, 1] - pr[1]) / size).astype(np.int64)
    keep = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny) & (points[:, 2] >= pr[2]) & (points[:, 2] < pr[5])
    pts, ix, iy = points[keep], ix[keep], iy[keep]
    key = (batch[keep] * ny + iy) * nx + ix
    uniq, inv = np.unique(key, return_inverse=True)
    count = np.bincount(inv, minlength=len(uniq))
    mean = np.stack([np.bincount(inv, weights=pts[:, d], minlength=len(uniq)) for d in range(3)], 1) / count[:, None]
    cx = (ix + 0.5) * size + pr[0]
    cy = (iy + 0.5) * size + pr[1]
    features = np.concatenate([pts[:, :4], pts[:, :3] - mean[inv], (pts[:, 0] - cx)[:, None], (pts[:, 1] - cy)[:, None]], 1)
    return features, inv, uniq


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pillar", type=float, default=0.16)
    args = parser.parse_args()

    import torch

    from mmapps.open3d_loader import import_open3d
    from mmapps_domains.driving.demo import write_demo_data
    from mmapps_domains.driving.points import read_velodyne
    from mmapps_domains.driving.preprocess import pillarise

    o3d = import_open3d()
    work = Path(tempfile.mkdtemp(prefix="mmapps-drv-bench-"))
    try:
        root = write_demo_data(work / "demo", n=args.frames, seed=0)
        clouds = [read_velodyne(p) for p in sorted((root / "training" / "velodyne").glob("*.bin"))]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    points = np.concatenate(clouds)
    batch = np.concatenate([np.full(len(c), i) for i, c in enumerate(clouds)])
    n = len(points)
    pts_t, batch_t = torch.from_numpy(points), torch.from_numpy(batch)
    ours = pillarise(pts_t, batch_t, POINT_RANGE, args.pillar)
    ref = pillarise_numpy(points.astype(np.float32), batch, POINT_RANGE, args.pillar)
    assert np.array_equal(ours.pillar_of_point.numpy(), ref[1]), "torch and NumPy pillarisation disagree"
    assert np.allclose(ours.features.numpy(), ref[0], atol=1e-4), "torch and NumPy features disagree"
    t_torch = best_of(lambda: pillarise(pts_t, batch_t, POINT_RANGE, args.pillar), args.repeats)
    t_numpy = best_of(lambda: pillarise_numpy(points, batch, POINT_RANGE, args.pillar), args.repeats)

    def o3d_down() -> None:
        for c in clouds:
            cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(c[:, :3].astype(np.float64)))
            cloud.voxel_down_sample(args.pillar)

    t_o3d = best_of(o3d_down, args.repeats)
    rows = [["mmapps pillarise (torch)", n / t_torch], ["NumPy reference (same op)", n / t_numpy], ["open3d voxel_down_sample (simpler op)", n / t_o3d]]
    ratio = t_numpy / t_torch
    md = (f"# Pillarisation throughput\n\n{args.frames} demo sweeps, {n} points, pillar {args.pillar} m, range {POINT_RANGE}; best of {args.repeats}.\n\n"
          + table(["implementation", "points/s"], rows) + f"\n\ntorch / NumPy speed ratio: **{ratio:.2f}x** (outputs checked equal).\n\nmachine: {machine()}\n")
    path = write_results("driving_pillars", {"points": n, "points_per_s": {r[0]: r[1] for r in rows}, "ratio_torch_over_numpy": ratio, "machine": machine()}, md)
    print(md)
    print(f"written {path}")


if __name__ == "__main__":
    main()
