"""Surveillance: fused model vs single-modality baselines, frame AUC / AP over seeds (mean ± sd).

Each configuration trains the chosen recipe on the demo data (the same clips for all) with
``model.modalities`` restricted, then reads the test metrics.

Usage: python benchmarks/surveillance_fusion.py [--recipe default] [--seeds 0 1 2] [--set train.epochs=20]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, table, write_results  # noqa: E402

CONFIGS = {"fused (audio+chat+video)": ["audio", "chat", "video"], "video only": ["video"], "audio only": ["audio"], "chat only": ["chat"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="default")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    parser.add_argument("--tag", default="", help="suffix of the results file name")
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], help="extra config overrides, e.g. train.epochs=20")
    args = parser.parse_args()

    from mmapps.workflows.resolve import resolve_config
    from mmapps.workflows.run import train
    from mmapps_domains.surveillance import domain

    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs:
            for seed in args.seeds:
                mods = "[" + ",".join(CONFIGS[name]) + "]"
                cfg = resolve_config(domain, args.recipe, None, [f"model.modalities={mods}", f"seed={seed}", "eval.bootstrap_resamples=0", "train.progress=false", "train.tensorboard=false", *args.overrides],
                                     {"out_dir": str(Path(tmp) / f"{name.split()[0]}-{seed}")})
                metrics = train(cfg, domain).metrics
                for key in ("frame/auc", "frame/ap", "frame/ap_xd", "event/map@0.3"):
                    results.setdefault(name, {}).setdefault(key, []).append(float(metrics.get(key, np.nan)))
                print(name, seed, {k: v[-1] for k, v in results[name].items()}, flush=True)
    keys = ("frame/auc", "frame/ap", "frame/ap_xd", "event/map@0.3")
    rows = [[name] + [f"{np.mean(v[k]):.3f} ± {np.std(v[k], ddof=1) if len(v[k]) > 1 else 0:.3f}" for k in keys] for name, v in results.items()]
    markdown = f"# Surveillance: fusion vs single modality\n\nrecipe {args.recipe}, seeds {args.seeds}, demo test split.\n\n" + table(["model"] + list(keys), rows) + "\n"
    path = write_results(f"surveillance_fusion_{args.recipe}{args.tag}", {"machine": machine(), "results": results}, markdown)
    print(markdown)
    print(f"written: {path}")


if __name__ == "__main__":
    main()
