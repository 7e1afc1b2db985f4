"""Frozen text features on disk: a label-efficiency-shaped `train` run with the store warm vs off.

Baseline: ``cache.frozen_features=false`` (the behaviour before `mmapps.models.frozen_features`:
each run encodes every note it meets once, alone, in memory). Against it: the store on and warm
(filled by one run beforehand, as every run after the first of a study finds it). Everything else is
identical: the medical study setup (`mmapps.workflows.label_efficiency.SETUPS`), all labelled train
samples, ``--steps`` optimiser steps, the test split scored, one torch thread, the image cache warm
for both. Rounds alternate off, warm, off, warm ... in one process; each round is a new `train`
(a new model, empty in-memory caches). Test metrics of the two arms are compared too: the store must
not change a result.

Writes ``benchmarks/results/frozen_features.{json,md}``.

Usage: python benchmarks/frozen_features.py [--rounds 3] [--steps 60]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, table, write_results  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()

    import torch

    from mmapps.plugins import get_domain
    from mmapps.workflows.label_efficiency import COMMON, SETUPS
    from mmapps.workflows.resolve import resolve_config
    from mmapps.workflows.run import train

    torch.set_num_threads(1)
    domain = get_domain("medical")
    setup = SETUPS["medical"]
    work = Path(tempfile.mkdtemp(prefix="mmapps-frozen-features-"))
    store = work / "cache"

    def run(name: str, on: bool) -> tuple[float, float, float]:
        overrides = [*setup["overrides"], *COMMON, "train.lr=1e-3", f"train.max_steps={args.steps}", "seed=0", "train.threads=1", f"out_dir={work / name}",
                     f"cache.dir={store}", f"cache.frozen_features={str(on).lower()}"]
        cfg = resolve_config(domain, setup["recipe"], overrides=overrides)
        wall, cpu = time.perf_counter(), time.process_time()
        result = train(cfg, domain)
        return time.perf_counter() - wall, time.process_time() - cpu, float(result.metrics["auroc/macro"])

    run("fill", True)  # fills the image cache and the frozen-feature store
    off, warm = [], []
    for i in range(args.rounds):
        off.append(run(f"off-{i}", False))
        warm.append(run(f"warm-{i}", True))

    med = lambda xs, k: statistics.median(x[k] for x in xs)  # noqa: E731
    ratio_wall, ratio_cpu = med(off, 0) / med(warm, 0), med(off, 1) / med(warm, 1)
    same = {round(x[2], 6) for x in off + warm}
    payload = {"machine": machine(), "rounds": args.rounds, "steps": args.steps, "off": off, "warm": warm, "speedup_wall": ratio_wall, "speedup_cpu": ratio_cpu,
               "test_auroc_values": sorted(same)}
    rows = [["off (cache.frozen_features=false)", med(off, 0), med(off, 1)], ["warm store", med(warm, 0), med(warm, 1)], ["off / warm", ratio_wall, ratio_cpu]]
    md = "\n".join([
        "# Frozen text features on disk",
        "",
        f"`python benchmarks/frozen_features.py --rounds {args.rounds} --steps {args.steps}`: one medical label-efficiency run (all labelled train samples, "
        f"{args.steps} optimiser steps, test split scored, 1 torch thread), `cache.frozen_features=false` (baseline: per-run, in-memory) alternated with a warm "
        "store, each round a new `train` in one process. Median seconds per run:",
        "",
        table(["arm", "wall s", "CPU s"], rows),
        "",
        f"Test macro AUROC of every run: {', '.join(f'{v:.6f}' for v in sorted(same))} ({'identical' if len(same) == 1 else 'they differ'} across arms and rounds).",
        "",
        f"Machine: {payload['machine']}.",
        "",
    ])
    print(write_results("frozen_features", payload, md))


if __name__ == "__main__":
    main()
