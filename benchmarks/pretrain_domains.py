"""Driving and surveillance pretraining through the CLI: time, held-out loss per modality vs the mean predictor, fine-tuning from it.

Not a speed comparison (nothing to alternate against): each ``mmapps <domain> pretrain --recipe R``
runs once as a child process; its wall time, CPU time (user + system, from the child's rusage)
and peak RSS are recorded with the machine's load average, then the held-out reconstruction
loss of every modality from the run's ``metrics.json`` beside the per-position mean predictor's
(``trivial/<m>``, fitted on the pool, scored on the same held-out samples and masks) and the
loss with the other modalities hidden. A fine-tuning check follows: ``train --recipe smoke
--init <run>`` (its exit code, the tensors loaded, the primary metric).

    python benchmarks/pretrain_domains.py --domains driving surveillance --recipes smoke quick
    python benchmarks/pretrain_domains.py --from-runs /tmp/p2   # tabulate runs already made (<domain>-<recipe> folders)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, table, write_results  # noqa: E402

PRIMARY = {"driving": "bev_ap_r40/Car/moderate", "surveillance": "frame/auc"}


def run_cli(argv: list[str], log: Path) -> dict[str, Any]:
    """Run ``mmapps <argv>``; wall and CPU seconds of the child, its peak RSS, exit code and output."""
    start, load = time.perf_counter(), os.getloadavg()[0]
    with log.open("w") as out:
        child = subprocess.Popen([sys.executable, "-m", "mmapps", *argv], stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    return {"argv": "mmapps " + " ".join(argv), "exit": os.waitstatus_to_exitcode(status), "wall_s": round(wall, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "peak_rss_mb": round(usage.ru_maxrss / 1024), "load_before": round(load, 1), "load_after": round(os.getloadavg()[0], 1), "output": log.read_text()[-4000:]}


def pretrain_row(domain: str, recipe: str, run: Path, timing: dict[str, Any] | None) -> dict[str, Any]:
    metrics = json.loads((run / "metrics.json").read_text())
    modalities = sorted(k.split("/")[1] for k in metrics if k.startswith("loss/") and k.count("/") == 1)
    losses = {m: {"held_out": metrics[f"loss/{m}"], "mean_predictor": metrics.get(f"trivial/{m}"), "others_hidden": metrics.get(f"loss/{m}/others_hidden")} for m in modalities}
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else {}
    return {"domain": domain, "recipe": recipe, "run": str(run), "losses": losses, "timing": timing, "summary": summary}


def finetune(domain: str, run: Path, work: Path) -> dict[str, Any]:
    out = work / f"{run.name}-finetune"
    timing = run_cli([domain, "train", "--recipe", "smoke", "--init", str(run), "--out", str(out)], work / f"{run.name}-finetune.log")
    loaded = re.search(r"loaded (\d+) tensors[^\n]*", timing["output"])
    metrics = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").is_file() else {}
    return {**{k: v for k, v in timing.items() if k != "output"}, "loaded": loaded.group(0) if loaded else None, "primary": metrics.get(PRIMARY.get(domain, ""))}


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["# Driving and surveillance pretraining (smoke and quick recipes)", "",
             "Held-out reconstruction loss per modality after pretraining, beside the per-position mean predictor "
             "(lower is better; `others hidden`: the same loss with every other modality hidden). "
             "Time: one run each, wall and CPU (user + system) seconds of the `mmapps` child process, with the 1-minute load "
             "average of the machine (2 cores) before and after: wall time on a shared machine is not a speed figure, CPU time is closer to one.", ""]
    body = []
    for r in rows:
        t = r["timing"] or {}
        for m, v in r["losses"].items():
            trivial = v["mean_predictor"]
            ratio = f"{v['held_out'] / trivial:.2f}" if trivial else "-"
            body.append([r["domain"], r["recipe"], m, v["held_out"], trivial if trivial is not None else "-", ratio, v["others_hidden"] if v["others_hidden"] is not None else "-",
                         t.get("wall_s", "-"), t.get("cpu_s", "-"), f"{t.get('load_before', '-')}/{t.get('load_after', '-')}"])
    lines.append(table(["domain", "recipe", "modality", "held-out loss", "mean predictor", "ratio", "others hidden", "wall s", "CPU s", "load"], body))
    lines += ["", "Fine-tuning from each pretraining (`train --recipe smoke --init <run>`):", ""]
    lines.append(table(["domain", "recipe", "exit", "loaded", "primary metric (smoke test split)", "wall s", "CPU s"],
                       [[r["domain"], r["recipe"], f["exit"], f["loaded"] or "-", f["primary"] if f["primary"] is not None else "-", f["wall_s"], f["cpu_s"]]
                        for r in rows if (f := r.get("finetune"))]))
    lines += ["", "Commands: " + "; ".join(sorted({(r["timing"] or {}).get("argv", r["run"]) for r in rows})), "", f"Machine: {machine()}", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", nargs="+", default=["driving", "surveillance"])
    parser.add_argument("--recipes", nargs="+", default=["smoke", "quick"])
    parser.add_argument("--from-runs", type=Path, default=None, help="tabulate <domain>-<recipe> run folders made before (their timing from <folder>.timing.json)")
    parser.add_argument("--no-finetune", action="store_true")
    parser.add_argument("--name", default="pretrain_domains")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pretrain-bench-"))
    rows = []
    for domain in args.domains:
        for recipe in args.recipes:
            if args.from_runs is not None:
                run = args.from_runs / f"{domain}-{recipe}"
                timing_file = run.with_name(run.name + ".timing.json")
                timing = json.loads(timing_file.read_text()) if timing_file.is_file() else None
            else:
                run = work / f"{domain}-{recipe}"
                timing = run_cli([domain, "pretrain", "--recipe", recipe, "--out", str(run)], work / f"{domain}-{recipe}.log")
                if timing["exit"] != 0:
                    raise SystemExit(f"{timing['argv']} failed (exit {timing['exit']}):\n{timing['output']}")
                timing.pop("output")
            row = pretrain_row(domain, recipe, run, timing)
            if not args.no_finetune:
                row["finetune"] = finetune(domain, run, work)
            rows.append(row)
            print(json.dumps({k: row[k] for k in ("domain", "recipe", "losses")}), flush=True)
    path = write_results(args.name, {"rows": rows, "machine": machine()}, markdown(rows))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
