"""Export benchmark: PyTorch eager fp32 vs onnxruntime fp32 vs int8 vs pruned 30 / 50 %, per domain.

    python benchmarks/export.py --domain medical --checkpoint RUN/checkpoints/best.safetensors [--rounds 5]

End to end (the exported model with mmapps' pre-processing, text cache off): latency at batch 1
and 32, median and p95, 1 and all threads, wall and CPU time, every variant alternated inside
each round (ABBA order) for `--rounds` rounds in one process; file size (external data
included); the test split's primary metric of every variant with the paired-bootstrap 95% CI of
its drop against PyTorch fp32. Components of a FusionModel (each CNN encoder alone, each text
transformer alone) are exported and quantised separately for the CNN and transformer goals.
Writes ``benchmarks/results/export_<domain>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, table, write_results

GOALS = {"cnn_speed": 2.5, "cnn_size": 3.5, "transformer_b32": 1.8, "transformer_b1": 1.5, "e2e_b1": 1.4, "e2e_b32": 2.0}


def timed_calls(fn: Callable[[], Any], calls: int) -> tuple[list[float], list[float]]:
    walls, cpus = [], []
    for _ in range(calls):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return walls, cpus


def alternate(variants: dict[str, Callable[[int], Callable[[], Any]]], threads: list[int], rounds: int, calls: dict[int, int], sizes: list[int]) -> dict[str, Any]:
    """variants: name -> (threads -> a call for each batch size); returns per (name, threads, batch) latency stats in ms."""
    samples: dict[tuple[str, int, int], tuple[list[float], list[float]]] = {}
    names = list(variants)
    built = {(name, t): variants[name](t) for name in names for t in threads}
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for t in threads:
            torch.set_num_threads(t)
            for size in sizes:
                for name in order:
                    fn = built[(name, t)][size]
                    if r == 0:
                        fn()  # warm-up (session arenas, allocator)
                    w, c = timed_calls(fn, calls[size])
                    got = samples.setdefault((name, t, size), ([], []))
                    got[0].extend(w)
                    got[1].extend(c)
    return {f"{n}|{t}|{s}": {"median_ms": 1e3 * statistics.median(w), "p95_ms": 1e3 * float(np.percentile(w, 95)), "min_ms": 1e3 * min(w), "cpu_median_ms": 1e3 * statistics.median(c), "calls": len(w)} for (n, t, s), (w, c) in samples.items()}


def paired_drop(domain: Any, cfg: Any, ref: dict[str, list], got: dict[str, list], resamples: int = 200) -> dict[str, float]:
    """The primary-metric drop with its paired-bootstrap 95% CI (`mmapps.export.drop.paired_drop`, resampling groups)."""
    from mmapps.export.drop import paired_drop as drop

    return drop(domain, cfg, ref, got, resamples)


def test_records(model: Any, loaded: Any) -> dict[str, list]:
    from mmapps.export.validation import _records
    from mmapps.report.complexity import text_cache_off

    records: dict[str, list] = {}
    with torch.no_grad(), (text_cache_off(model) if isinstance(model, torch.nn.Module) else _null()):
        for batch in loaded.loader("test"):
            _records(loaded.domain, model(batch), batch, records)
    return records


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *args: object) -> None:
        return None


def batches_of(loaded: Any, sizes: list[int]) -> dict[int, Any]:
    from mmapps.report.complexity import first_batch

    pool = loaded.splits.train if len(loaded.splits.train) >= max(sizes) else loaded.splits.test
    return {s: first_batch(pool, loaded.cfg, loaded.domain, s) for s in sizes}


def eager_variant(model: torch.nn.Module, batches: dict[int, Any]) -> Callable[[int], dict[int, Callable[[], Any]]]:
    from mmapps.report.complexity import text_cache_off

    def make(threads: int) -> dict[int, Callable[[], Any]]:
        def call(b: Any) -> Callable[[], Any]:
            def run() -> Any:
                with torch.no_grad(), text_cache_off(model):
                    return model(b)
            return run
        return {s: call(b) for s, b in batches.items()}
    return make


def onnx_variant(folder: Path, model_file: str | None, batches: dict[int, Any]) -> Callable[[int], dict[int, Callable[[], Any]]]:
    from mmapps.export.session import load_export

    def make(threads: int) -> dict[int, Callable[[], Any]]:
        model = load_export(folder, model_file, threads=threads)
        return {s: (lambda b=b: model(b)) for s, b in batches.items()}
    return make


def end_to_end(args: argparse.Namespace, domain: Any, work: Path) -> dict[str, Any]:
    from mmapps.export.export import export_checkpoint
    from mmapps.export.loading import load_for_export
    from mmapps.export.quantize import model_bytes
    from mmapps.export.session import load_export
    from mmapps.prune.workflow import prune

    log = lambda line: print(line, file=sys.stderr, flush=True)
    from mmapps.export.drop import parse_max_drop

    main = _Export(args.export) if args.export else export_checkpoint(
        args.checkpoint, domain, work / "export", quantize="static", calibration_samples=args.calibration, log=log,
        calibration_method=args.calibration_method, int8_max_drop=parse_max_drop(args.int8_max_drop, domain),
    )
    folders = {"onnxruntime fp32": (main.folder, None), "onnxruntime int8": (main.folder, "model.int8.onnx")}
    pruned_models = {}
    if args.prune_onnx:
        for amount in args.prune:
            pruned = prune(args.checkpoint, domain, work / f"pruned-{amount:g}", amount=amount)
            pruned_models[f"pytorch eager fp32 pruned {amount:.0%}"] = pruned.checkpoint
            folders[f"onnxruntime fp32 pruned {amount:.0%}"] = (export_checkpoint(pruned.checkpoint, domain, work / f"export-{amount:g}", log=log).folder, None)
    loaded = load_for_export(args.checkpoint, domain)
    batches = batches_of(loaded, args.batch)
    variants = {"pytorch eager fp32": eager_variant(loaded.model, batches)}
    if pruned_models:
        eager_pruned = {name: load_for_export(path, domain).model for name, path in pruned_models.items()}
    else:  # pruned in memory (the same torch-pruning step as `prune`, without its test run and report)
        eager_pruned = {f"pytorch eager fp32 pruned {a:.0%}": _pruned_copy(loaded, a) for a in args.prune}
    variants.update({name: eager_variant(model, batches) for name, model in eager_pruned.items()})
    variants.update({name: onnx_variant(folder, file, batches) for name, (folder, file) in folders.items()})
    latency = alternate(variants, args.threads, args.rounds, {1: args.calls_b1, 32: args.calls_b32, **{s: 1 for s in args.batch if s not in (1, 32)}}, args.batch)
    reference = test_records(loaded.model, loaded)
    metrics = {"pytorch eager fp32": paired_drop(domain, loaded.cfg, reference, reference, 0)}
    sizes = {"pytorch eager fp32": Path(args.checkpoint).stat().st_size}
    for name, (folder, file) in folders.items():
        metrics[name] = paired_drop(domain, loaded.cfg, reference, test_records(load_export(folder, file), loaded), args.resamples)
        sizes[name] = model_bytes(folder / (file or "model.onnx"))
    for name, model in eager_pruned.items():
        metrics[name] = paired_drop(domain, loaded.cfg, reference, test_records(model, loaded), args.resamples)
        sizes[name] = pruned_models[name].stat().st_size if name in pruned_models else 4 * sum(p.numel() for p in model.state_dict().values())
    result = {"latency": latency, "metrics": metrics, "sizes": sizes, "quantized": main_sidecar(main.folder)}
    goals = e2e_goals(result, args)
    if not goals["metric_drop_ci_high"]["met"] and not (result["quantized"] or {}).get("sensitivity"):
        from mmapps.export.sensitivity import sensitivity_table

        result["sensitivity_on_missed_test_goal"] = sensitivity_table(main.folder, loaded, "static", args.calibration, args.calibration_method, log)
    if not goals["all_met"]:
        from export_profile import op_profile

        feeds = load_export(main.folder).runtime.feeds(batches[max(args.batch)])
        result["profile"] = {name: op_profile(main.folder / file, feeds, 1) for name, file in (("onnxruntime fp32", "model.onnx"), ("onnxruntime int8", "model.int8.onnx"))}
    return result


def e2e_goals(e2e: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The end-to-end goals (int8 vs eager at b1 and b32, 1 thread) and the metric goal on test."""
    from mmapps.export.drop import drop_goal

    lat = e2e["latency"]
    ratio = lambda s: lat[f"pytorch eager fp32|1|{s}"]["median_ms"] / lat[f"onnxruntime int8|1|{s}"]["median_ms"] if f"onnxruntime int8|1|{s}" in lat else float("nan")
    m = e2e["metrics"]["onnxruntime int8"]
    goals = {"e2e_b1": (ratio(1), GOALS["e2e_b1"]), "e2e_b32": (ratio(32), GOALS["e2e_b32"])}
    high, goal = m.get("drop_ci_high", float("nan")), drop_goal(m["metric"])
    out = {k: {"value": v, "goal": g, "met": bool(v >= g)} for k, (v, g) in goals.items()}
    out["metric_drop_ci_high"] = {"value": high, "goal": goal, "met": bool(high <= goal)}
    out["all_met"] = all(v["met"] for v in out.values() if isinstance(v, dict))
    return out


def _pruned_copy(loaded: Any, amount: float) -> torch.nn.Module:
    import copy

    from mmapps.prune.channels import prune_channels
    from mmapps.report.complexity import first_batch

    model = copy.deepcopy(loaded.model)
    prune_channels(model, first_batch(loaded.splits.train, loaded.cfg, loaded.domain, 8), amount)
    return model.eval()


class _Export:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)


def main_sidecar(folder: Path) -> Any:
    import json

    return json.loads((folder / "model.json").read_text()).get("quantized")


def render(domain: str, result: dict[str, Any], args: argparse.Namespace) -> str:
    e2e = result["end_to_end"]
    load = result.get("load_average", {})
    lines = [f"# Export benchmark: {domain}", "", f"Checkpoint `{args.checkpoint}`; {args.rounds} alternated rounds; threads {args.threads}; machine {result['machine']}.", "",
             (f"Load average (1 min) at start {load.get('start', float('nan')):.1f}, at end {load.get('end', float('nan')):.1f} on {os.cpu_count()} cores: a shared machine, "
              "so absolute times are inflated and noisy; the variants alternate inside every round, so ratios are fairer than times."), ""]
    rows = []
    for name in e2e["metrics"]:
        row = [name]
        for t in args.threads:
            for s in args.batch:
                st = e2e["latency"][f"{name}|{t}|{s}"]
                row.append(f"{st['median_ms']:.1f} / {st['p95_ms']:.1f} (cpu {st['cpu_median_ms']:.1f})")
        m = e2e["metrics"][name]
        row += [f"{e2e['sizes'][name] / 1e6:.1f}", f"{m['value']:.4f}", f"{m['drop']:+.4f} [{m.get('drop_ci_low', float('nan')):+.4f}, {m.get('drop_ci_high', float('nan')):+.4f}]"]
        rows.append(row)
    header = ["variant"] + [f"{t} thr, b{s}: median / p95 ms" for t in args.threads for s in args.batch] + ["MB", e2e["metrics"]["pytorch eager fp32"]["metric"], "drop vs eager [95% CI]"]
    lines += ["## End to end (mmapps pre-processing + model, text cache off)", "", table(header, rows), ""]
    ratios = []
    for t in args.threads:
        for s in args.batch:
            eager = e2e["latency"][f"pytorch eager fp32|{t}|{s}"]["median_ms"]
            fp32 = e2e["latency"][f"onnxruntime fp32|{t}|{s}"]["median_ms"]
            int8 = e2e["latency"][f"onnxruntime int8|{t}|{s}"]["median_ms"]
            ratios.append([f"{t} thr, b{s}", eager / int8, fp32 / int8, eager / fp32])
    lines += ["Speed-up ratios (median wall):", "", table(["setting", "eager / int8", "ort fp32 / int8", "eager / ort fp32"], ratios), ""]
    q = e2e.get("quantized") or {}
    if q:
        lines += [f"int8 share of MACs: {q.get('int8_mac_share', 0):.1%}; int8 ops {q.get('int8_ops')}; fp32 ops {q.get('fp32_ops')}; size ratio {q.get('sizes', {}).get('ratio', float('nan')):.2f}x", ""]
        lines += [f"- fp32 `{k}`: {v}" for k, v in (q.get("fp32_reasons") or {}).items()] + [""]
        v, goal = q.get("validation", {}), q.get("goal", {})
        if v:
            lines += [(f"Export's int8 check on validation: {v.get('metric')} fp32 {_f(v.get('fp32'))} -> int8 {_f(v.get('int8'))}, drop {_f(v.get('drop'))} "
                       f"(95% CI upper bound {_f(v.get('drop_ci_high'))}, goal {goal.get('max_drop_ci_high')}: {'met' if goal.get('met') else 'missed' if goal.get('met') is False else 'not checked'}); "
                       f"calibration {q.get('calibration')}."), ""]
        sens = q.get("sensitivity")
        if sens:
            lines += [f"Per-layer sensitivity (the all-int8 graph missed the goal: {sens['all_int8']}); score: {sens['score']} on {sens['probe_samples']} validation samples:", "",
                      table(["op group", "ops", "share of MACs", "output error", "kept fp32"], [[r["group"], ", ".join(f"{k} x{n}" for k, n in r["ops"].items()), f"{r['mac_share']:.1%}", r["output_error"], "yes" if r["kept_fp32"] else ""] for r in sens["table"]]),
                      "", "Search steps: " + "; ".join(f"{st['fp32_groups']} group(s) fp32 -> int8 share {st['int8_mac_share']:.1%}, drop CI upper {_f(st['drop_ci_high'])}" for st in sens["steps"]), ""]
    if e2e.get("sensitivity_on_missed_test_goal"):
        rows = e2e["sensitivity_on_missed_test_goal"]
        lines += ["Per-layer sensitivity (the test-split metric goal is missed; the export's validation check had passed, so this table is computed after the fact, on validation):", "",
                  table(["op group", "ops", "share of MACs", "output error"], [[r["group"], ", ".join(f"{k} x{n}" for k, n in r["ops"].items()), f"{r['mac_share']:.1%}", r["output_error"]] for r in rows]), ""]
    goals = e2e_goals(e2e, args)
    lines += ["End-to-end goals (1 thread, int8 vs PyTorch eager; metric on test): " + ", ".join(f"{k} {v['value']:.3f} (goal {v['goal']}: {'met' if v['met'] else 'MISSED'})" for k, v in goals.items() if isinstance(v, dict)), ""]
    if e2e.get("profile"):
        from export_profile import render_profile

        lines += ["Where the time goes (onnxruntime profiler, 1 thread, largest batch, kernel time by op type):", ""] + [f"- {render_profile(n, rows)}" for n, rows in e2e["profile"].items()] + [""]
    for comp in result.get("components", []):
        lines += [f"## Component: {comp['name']} ({comp['method']} int8)", "", table(["setting", "fp32 median ms", "int8 median ms", "speed-up", "fp32 cpu ms", "int8 cpu ms"], comp["rows"]),
                  "", f"size fp32 {comp['fp32_bytes'] / 1e6:.2f} MB, int8 {comp['int8_bytes'] / 1e6:.2f} MB ({comp['fp32_bytes'] / comp['int8_bytes']:.2f}x); max |Δ| {comp['max_abs_diff']:.4g}; int8 share of MACs {comp['int8_mac_share']:.1%}", ""]
        if comp.get("goals"):
            lines += ["Goals: " + ", ".join(f"{k} {v['value']:.2f}x (goal {v['goal']}x: {'met' if v['met'] else 'MISSED'})" for k, v in comp["goals"].items()), ""]
        if comp.get("profile"):
            from export_profile import render_profile

            lines += [f"- {render_profile(n, rows)}" for n, rows in comp["profile"].items()] + [""]
    lines += ["Goals: " + ", ".join(f"{k} >= {v}x" for k, v in GOALS.items()) + "; metric drop CI upper bound <= 0.01 AUROC / frame AUC or <= 0.02 AP.", ""]
    return "\n".join(lines)


def _f(value: Any) -> str:
    return "n/a" if value is None else f"{value:+.4f}" if isinstance(value, float) and abs(value) < 0.1 else f"{value:.4f}" if isinstance(value, float) else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domain", required=True)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--calls-b1", type=int, default=5)
    parser.add_argument("--calls-b32", type=int, default=1)
    parser.add_argument("--prune", type=float, nargs="*", default=[0.3, 0.5])
    parser.add_argument("--prune-onnx", action="store_true", help="also export the pruned checkpoints and time them on onnxruntime")
    parser.add_argument("--calibration", type=int, default=64)
    parser.add_argument("--calibration-method", default="minmax", choices=["minmax", "entropy", "percentile"])
    parser.add_argument("--int8-max-drop", default="auto", help="export's sensitivity-search goal (auto: the domain's; none: no search)")
    parser.add_argument("--resamples", type=int, default=200, help="paired-bootstrap resamples of the metric drop")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--export", type=Path, default=None, help="reuse this export folder (exported with --quantize static) instead of exporting")
    parser.add_argument("--no-components", action="store_true")
    args = parser.parse_args()
    from mmapps.plugins import get_domain

    domain = get_domain(args.domain)
    work = args.work or Path(tempfile.mkdtemp(prefix=f"export-bench-{args.domain}-"))
    start_load = os.getloadavg()[0]
    result: dict[str, Any] = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}, "end_to_end": end_to_end(args, domain, work)}
    result["load_average"] = {"start": start_load, "end": os.getloadavg()[0]}
    write_results(f"export_{args.domain}", result, render(args.domain, result, args))  # the end-to-end table, before the components
    if not args.no_components:
        from export_components import components

        result["components"] = components(args, domain, work, alternate)
    result["load_average"]["end"] = os.getloadavg()[0]
    path = write_results(f"export_{args.domain}", result, render(args.domain, result, args))
    print(path.read_text())


if __name__ == "__main__":
    main()
