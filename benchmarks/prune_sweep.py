"""Pruning sweep: structured channel pruning at several amounts of one checkpoint, each tested.

    python benchmarks/prune_sweep.py --domain medical --checkpoint RUN/checkpoints/best.safetensors [--amounts 0 0.3 0.5 0.7]

Per amount: the test split's primary metric with its bootstrap CI, parameters, MACs per sample and
the measured inference samples/s (the pruned run's complexity section, same batch for every
amount). Writes ``benchmarks/results/prune_sweep_<domain>.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine, table, write_results  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domain", required=True)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--amounts", type=float, nargs="+", default=[0.0, 0.3, 0.5, 0.7])
    parser.add_argument("--finetune-epochs", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples of the test metric's interval (whatever the checkpoint's run used)")
    args = parser.parse_args()
    from mmapps.plugins import get_domain
    from mmapps.prune.workflow import prune
    from mmapps.train.trainer import primary_key

    domain = get_domain(args.domain)
    key = primary_key(domain)
    work = args.work or Path(tempfile.mkdtemp(prefix=f"prune-sweep-{args.domain}-"))
    load_start = os.getloadavg()[0]
    trained = json.loads(metrics.read_text()).get(key) if (metrics := args.checkpoint.resolve().parent.parent / "metrics.json").is_file() else None
    rows = []
    for amount in args.amounts:
        result = prune(args.checkpoint, domain, work / f"p{amount:g}", amount=amount, finetune_epochs=args.finetune_epochs,
                       overrides={"eval": {"bootstrap_resamples": args.resamples}})
        sections = {s["title"]: s["data"] for s in json.loads((result.out_dir / "report.json").read_text())["sections"]}
        speed = sections.get("Complexity", {}).get("inference_samples_per_s")
        m = result.metrics
        rows.append({"amount": amount, "metric": m.get(key), "ci_low": m.get(f"{key}/ci_low"), "ci_high": m.get(f"{key}/ci_high"),
                     "parameters": result.summary.parameters_after, "macs_per_sample": result.summary.macs_after, "inference_samples_per_s": speed})
        print(rows[-1], file=sys.stderr, flush=True)
    md = [f"# Pruning sweep: {args.domain}", "", f"Checkpoint `{args.checkpoint}`, structured channels, fine-tuning epochs {args.finetune_epochs}; machine {machine()}.", "",
          f"The checkpoint as trained (no pruning, no fine-tuning): test {key} {trained:.4f}." if trained is not None else "", "",
          f"Load average (1 min) at start {load_start:.1f}, at end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: samples/s is the run "
          "report's single measurement, comparable across amounts only on a quiet machine (benchmarks/export.py alternates pruned "
          "and unpruned latency in one run); MACs and parameters do not depend on the load.", "",
          table(["amount", f"{key} [95% CI]", "parameters", "MMACs / sample", "inference samples/s"],
                [[f"{r['amount']:.0%}", f"{r['metric']:.4f} " + (f"[{r['ci_low']:.4f}, {r['ci_high']:.4f}]" if r["ci_low"] is not None else "(no interval)"),
                  f"{r['parameters']:,}", r["macs_per_sample"] / 1e6, r["inference_samples_per_s"]] for r in rows]),
          "", f"![sweep](prune_sweep_{args.domain}.png)", ""]
    write_results(f"prune_sweep_{args.domain}", {"machine": machine(), "metric": key, "rows": rows, "trained_metric": trained,
                                                 "finetune_epochs": args.finetune_epochs, "load_at_start": load_start}, "\n".join(md))
    plot(rows, key, RESULTS / f"prune_sweep_{args.domain}.png")
    print("\n".join(md))


def plot(rows: list[dict], key: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    amounts = [r["amount"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    with_ci = all(r["ci_low"] is not None for r in rows)
    yerr = [[r["metric"] - r["ci_low"] for r in rows], [r["ci_high"] - r["metric"] for r in rows]] if with_ci else None
    axes[0].errorbar(amounts, [r["metric"] for r in rows], yerr=yerr, marker="o", capsize=3)
    axes[0].set(xlabel="share of channels removed", ylabel=key, title="test metric (95% CI)" if with_ci else "test metric")
    axes[1].plot(amounts, [r["macs_per_sample"] / rows[0]["macs_per_sample"] for r in rows], marker="o", label="MACs")
    axes[1].plot(amounts, [r["parameters"] / rows[0]["parameters"] for r in rows], marker="s", label="parameters")
    axes[1].set(xlabel="share of channels removed", ylabel="relative to unpruned", title="cost")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
