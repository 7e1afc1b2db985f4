"""Driving and surveillance exports: onnxruntime vs PyTorch eager, batch 1, and ``watch`` on each.

    python benchmarks/export_streaming.py --driving-checkpoint D/best.safetensors --driving-export EXP_D \\
        --surveillance-checkpoint S/best.safetensors --surveillance-export EXP_S [--rounds 7]

Arms, alternated ABAB inside each round for ``--rounds`` rounds in one process, 1 intra-op thread
each (torch.set_num_threads(1), onnxruntime intra_op_num_threads=1); median and min of the
per-call wall and process-CPU times over all rounds:

- driving, one validation frame per call (batch 1): A = PyTorch eager ``model(batch)`` (torch
  `pillarise` inside), B = the export: `DrivingRuntime.feeds` (numpy `pillarise_numpy`) +
  onnxruntime. Post-processing (decoding, NMS) is the same code after both and is left out.
- surveillance step, one window of one stream per call, ring buffer full (the stream has run
  ``max_context`` windows first): A = `StreamingScorer.step` (PyTorch, `watch`'s scorer), B =
  `OnnxStreamingScorer.step` (the step graph). Encoders included; decoding excluded.
- surveillance ``watch``: `watch_clip` end to end (decode, features, scoring, alerts) on a demo
  recording of ``--seconds`` s, A with the checkpoint, B with the export; real-time factor =
  recording seconds / wall seconds (model loading excluded).

The parity figures are read from each export's ``model.json`` (written by ``export``).
Writes ``benchmarks/results/export_streaming.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, table, write_results  # noqa: E402


def alternate(arms: dict[str, Callable[[], Any]], rounds: int, calls: int) -> dict[str, dict[str, float]]:
    """ABAB over `rounds` (order reversed every other round), `calls` timed calls per arm and round."""
    walls: dict[str, list[float]] = {a: [] for a in arms}
    cpus: dict[str, list[float]] = {a: [] for a in arms}
    for fn in arms.values():
        fn()  # warm-up
    for r in range(rounds):
        for name in (list(arms) if r % 2 == 0 else list(arms)[::-1]):
            for _ in range(calls):
                w, c = time.perf_counter(), time.process_time()
                arms[name]()
                walls[name].append(time.perf_counter() - w)
                cpus[name].append(time.process_time() - c)
    return {a: {"wall_median_ms": 1e3 * statistics.median(walls[a]), "wall_min_ms": 1e3 * min(walls[a]),
                "cpu_median_ms": 1e3 * statistics.median(cpus[a]), "cpu_min_ms": 1e3 * min(cpus[a]), "calls": len(walls[a])} for a in arms}


def driving_arms(checkpoint: Path, export: Path, frames: int) -> tuple[dict[str, Callable[[], Any]], dict[str, Any]]:
    import torch

    from mmapps.export.loading import load_for_export
    from mmapps.export.session import load_export
    from mmapps.plugins import get_domain

    loaded = load_for_export(checkpoint, get_domain("driving"))
    onnx_model = load_export(export, threads=1)
    batches = [b for _, b in zip(range(frames), single_batches(loaded))]
    state = {"i": 0}

    def next_batch() -> Any:
        state["i"] = (state["i"] + 1) % len(batches)
        return batches[state["i"]]

    def eager() -> None:
        with torch.inference_mode():
            loaded.model(next_batch())

    def onnx() -> None:
        batch = next_batch()
        onnx_model.run(onnx_model.runtime.feeds(batch))

    points = [int(b.inputs["lidar"].data.shape[0]) for b in batches]
    return {"PyTorch eager": eager, "onnxruntime": onnx}, {"frames": len(batches), "points_median": int(np.median(points)), "parity": onnx_model.sidecar.parity}


def single_batches(loaded: Any) -> Any:
    from mmapps.data import collate_samples

    layouts = {m.name: m.layout for m in loaded.domain.modalities}
    for i in range(len(loaded.splits.val)):
        yield collate_samples([loaded.splits.val[i]], layouts)


def step_arms(checkpoint: Path, export: Path) -> tuple[dict[str, Callable[[], Any]], dict[str, Any]]:
    import torch

    from mmapps.data.sample import Batch, ModalityBatch
    from mmapps_domains.surveillance.export import open_scorer

    cfg, torch_scorer, _ = open_scorer(checkpoint, threads=1)
    if export is not None:
        from mmapps.export.sidecar import read_sidecar

        _, onnx_scorer, _ = open_scorer(export, threads=1)
        sidecar, _ = read_sidecar(export)
        step_info = sidecar.preprocess["step"]
        clip_parity = sidecar.parity
    else:  # only the step graph, exported here from the checkpoint (no dataset needed)
        step_info, onnx_scorer = export_step_only(torch_scorer, cfg)
        clip_parity = None
    specs = [s for s in step_info["inputs"] if s["role"] == "data"]
    rng = np.random.default_rng(0)
    window = Batch({s["modality"]: ModalityBatch(torch.from_numpy(rng.standard_normal((1, *s["shape"][1:])).astype(np.float32)), torch.ones(1, dtype=torch.bool), torch.ones(1, 1, dtype=torch.bool)) for s in specs}, {}, ["s"], ["s"], [{}])
    capacity = step_info["max_context"]
    worst = 0.0
    for _ in range(capacity):  # fill the ring buffer: the steady state of a long stream
        worst = max(worst, float((torch_scorer.step(window) - onnx_scorer.step(window)).abs().max()))
    return {"PyTorch step": lambda: torch_scorer.step(window), "onnxruntime step graph": lambda: onnx_scorer.step(window)}, {
        "max_context": capacity, "step_parity": step_info.get("parity"), "fill_max_abs_diff": worst, "clip_parity": clip_parity, "window_s": cfg.data.options.get("window_s", 1.0)}


def export_step_only(torch_scorer: Any, cfg: Any) -> tuple[dict[str, Any], Any]:
    from mmapps_domains.surveillance.export_step import OnnxStreamingScorer, export_step_graph
    from mmapps_domains.surveillance.options import data_options

    from mmapps.export.session import create_session

    opts = data_options(cfg.data.options)
    spec = opts.window_spec()
    channels = opts.channels * (2 if opts.motion_channel else 1)
    shapes = {"video": (spec.frames_per_window, channels, spec.height, spec.width), "audio": (spec.n_mels, spec.mel_frames), "chat": (385,)}
    step = torch_scorer.module
    path = Path(tempfile.mkdtemp(prefix="mmapps-step-")) / "step.onnx"
    inputs, _ = export_step_graph(step, {m: shapes[m] for m in step.modalities}, len(opts.classes), path, 18)
    return {"inputs": [s.to_json() for s in inputs], "max_context": step.max_context}, OnnxStreamingScorer(create_session(path, 1), inputs)


def watch_rtf(checkpoint: Path, export: Path, seconds: float, rounds: int) -> dict[str, Any]:
    from mmapps_domains.surveillance.demo import write_demo_data
    from mmapps_domains.surveillance.watch import watch_clip

    work = Path(tempfile.mkdtemp(prefix="mmapps-watch-rtf-"))
    try:
        root = write_demo_data(work / "data", n=1, seed=5, duration=seconds)
        row = json.loads((root / "manifest.jsonl").read_text().splitlines()[0])
        extra = {"audio": root / row["audio"] if row.get("audio") else None, "chat": root / row["chat"] if row.get("chat") else None, "start_time": row.get("start_time")}
        rtf: dict[str, list[float]] = {"PyTorch": [], "onnxruntime": []}
        for r in range(rounds):
            for name in (["PyTorch", "onnxruntime"] if r % 2 == 0 else ["onnxruntime", "PyTorch"]):
                result = watch_clip(root / row["clip"], checkpoint if name == "PyTorch" else export, out=work / "alerts.jsonl", threads=1, **extra)
                rtf[name].append(result.real_time_factor)
        return {"seconds": seconds, "windows": result.n_windows, **{f"{k}_rtf_median": statistics.median(v) for k, v in rtf.items()}, **{f"{k}_rtf_min": min(v) for k, v in rtf.items()}}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--driving-checkpoint", type=Path)
    parser.add_argument("--driving-export", type=Path)
    parser.add_argument("--surveillance-checkpoint", type=Path)
    parser.add_argument("--surveillance-export", type=Path)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--frames", type=int, default=8, help="driving validation frames cycled through")
    parser.add_argument("--calls", type=int, default=8, help="timed calls per arm and round")
    parser.add_argument("--seconds", type=float, default=60.0, help="watch recording length")
    parser.add_argument("--name", default="export_streaming", help="results file name")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    payload: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "machine": machine()}
    rows, sections = [], []
    if args.driving_checkpoint:
        arms, info = driving_arms(args.driving_checkpoint, args.driving_export, args.frames)
        stats = alternate(arms, args.rounds, args.calls)
        payload["driving"] = {"latency": stats, **info}
        rows += [["driving, 1 frame", name, s["wall_median_ms"], s["wall_min_ms"], s["cpu_median_ms"], s["cpu_min_ms"]] for name, s in stats.items()]
        p = info["parity"]
        sections.append(f"Driving parity on validation ({p['samples']} frames): max |d| {p['max_abs_diff']:.3g}, "
                        f"{p['metric']} PyTorch {p['metric_torch']} vs onnxruntime {p['metric_onnx']}; {info['frames']} frames cycled, median {info['points_median']} points.")
    if args.surveillance_checkpoint:
        arms, info = step_arms(args.surveillance_checkpoint, args.surveillance_export)
        stats = alternate(arms, args.rounds, args.calls * 4)
        payload["surveillance_step"] = {"latency": stats, **info}
        rows += [[f"surveillance, 1 window (ring of {info['max_context']} full)", name, s["wall_median_ms"], s["wall_min_ms"], s["cpu_median_ms"], s["cpu_min_ms"]] for name, s in stats.items()]
        sp, cp = info["step_parity"], info["clip_parity"]
        if cp:
            sections.append(f"Surveillance parity: clip graph on validation ({cp['samples']} clips) max |d| {cp['max_abs_diff']:.3g}, {cp['metric']} PyTorch {cp['metric_torch']} vs onnxruntime {cp['metric_onnx']}; "
                            f"step graph over {sp['windows']} windows of {sp['clips']} clips: max |d| {sp['max_abs_diff_onnx_vs_torch_step']:.3g} vs the PyTorch step, "
                            f"{sp['max_abs_diff_torch_step_vs_clip']:.3g} PyTorch step vs whole clip.")
        sections.append(f"Surveillance step graph vs the PyTorch step while filling the ring buffer ({info['max_context']} windows): max |d| of the logits {info['fill_max_abs_diff']:.3g}.")
        if args.surveillance_export is None:
            print("\n".join(sections))
    if args.surveillance_export:
        watch = watch_rtf(args.surveillance_checkpoint, args.surveillance_export, args.seconds, max(3, args.rounds // 2))
        payload["surveillance_watch"] = watch
        sections.append(f"`watch` end to end on a {watch['seconds']:g} s demo recording ({watch['windows']} windows), real-time factor median (min): "
                        f"PyTorch {watch['PyTorch_rtf_median']:.1f}x ({watch['PyTorch_rtf_min']:.1f}x), onnxruntime {watch['onnxruntime_rtf_median']:.1f}x ({watch['onnxruntime_rtf_min']:.1f}x).")
    markdown = (
        "# Driving and surveillance exports: onnxruntime vs PyTorch, batch 1\n\n"
        f"`python benchmarks/export_streaming.py {' '.join(sys.argv[1:])}`; 1 thread per arm, ABAB alternated, {args.rounds} rounds.\n\n"
        + table(["workload", "arm", "wall median ms", "wall min ms", "CPU median ms", "CPU min ms"], rows)
        + "\n\n" + "\n\n".join(sections) + f"\n\nMachine: {machine()}\n"
    )
    write_results(args.name, payload, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
