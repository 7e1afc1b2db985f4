"""Batched Grad-CAM vs MONAI's per-study GradCAM (the previous `mmapps medical evaluate` path), same maps.

The default medical model (ResNet-18 at 128 px + frozen MiniLM note tokens + attention fusion, 14
findings; untrained weights: the cost does not depend on them) maps the evaluate section's budget
of (study, finding) pairs (`MAX_POINTS` = 80 over 40 studies, two findings each). Baseline: one
``monai.visualize.GradCAM`` call per pair (forward + full backward of one image); mmapps:
``batched_gradcam`` over `PAIRS_PER_BATCH` rows per forward/backward. Rounds alternate A B A B in
one process (>= 7); median and min of wall and CPU time. The largest difference of the scaled maps is reported.

    python benchmarks/gradcam_batched.py [--rounds 7] [--pairs 80] [--size 128]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, table, write_results


def build_model(size: int):
    import torch
    from torch import nn

    from mmapps.models.build import register_core_parts
    from mmapps.models.fusion_model import FusionModel
    from mmapps.registry import ENCODERS, FUSIONS, HEADS

    register_core_parts()
    torch.manual_seed(0)
    encoders = nn.ModuleDict({
        "image": ENCODERS.get("image_cnn")(dim=128, backbone="resnet18", in_channels=1),
        "note": ENCODERS.get("text_transformer")(dim=128, max_length=96),
    })
    fusion = FUSIONS.get("attention")({"image": 128, "note": 128}, dim=128)
    return FusionModel(encoders, fusion, nn.ModuleDict({"findings": HEADS.get("multilabel")(128, 14)})).eval()


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--pairs", type=int, default=80)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch
    from mmapps_domains.medical.gradcam import (
        PAIRS_PER_BATCH,
        ImageLogits,
        batched_gradcam,
        scale_to_unit,
        target_layer,
    )
    from monai.visualize import GradCAM

    torch.set_num_threads(args.threads)
    model = build_model(args.size)
    g = torch.Generator().manual_seed(0)
    studies = [torch.rand(1, args.size, args.size, generator=g) for _ in range((args.pairs + 1) // 2)]
    notes = [f"study {i}: small left pleural effusion, no pneumothorax" if i % 3 else None for i in range(len(studies))]
    pairs = [(i // 2, (5 * i) % 14) for i in range(args.pairs)]  # two findings per study
    layer = target_layer(model, studies[0].unsqueeze(0))
    for note in notes:  # the frozen note outputs are cached in evaluate too: fill the cache first
        if note:
            model.encoders["note"]._encode([note])

    fresh: dict[str, torch.nn.Module] = {}

    def per_study() -> list:
        # as the previous evaluate: one GradCAM per study (MONAI's hooks stay on the model, so each
        # round runs on its own copy, made outside the timing), one call per finding
        maps, copy = [], fresh.pop("model")
        for s in sorted({s for s, _ in pairs}):
            cam = GradCAM(nn_module=ImageLogits(copy, notes[s]), target_layers=layer, postprocessing=scale_to_unit)
            for _, j in (p for p in pairs if p[0] == s):
                with torch.enable_grad():
                    maps.append(cam(studies[s].unsqueeze(0), class_idx=j).detach())
        return maps

    def batched() -> list:
        maps = []
        for start in range(0, len(pairs), PAIRS_PER_BATCH):
            chunk = pairs[start : start + PAIRS_PER_BATCH]
            images = torch.stack([studies[s] for s, _ in chunk])
            maps.extend(batched_gradcam(model, layer, images, [notes[s] for s, _ in chunk], [j for _, j in chunk]).split(1))
        return maps

    fresh["model"] = copy.deepcopy(model)
    reference, ours = per_study(), batched()
    worst = max(float((a - b).abs().max()) for a, b in zip(reference, ours))
    # untrained weights give near-flat raw maps, whose min-max scaling magnifies float-order differences of the batched
    # convolutions (here up to ~2e-3 at 32 pairs); domains/medical/tests/test_gradcam.py checks 1e-5 against MONAI
    runs: dict[str, list[tuple[float, float]]] = {"per-study MONAI GradCAM (baseline)": [], "batched": []}
    for _ in range(args.rounds):
        fresh["model"] = copy.deepcopy(model)
        runs["per-study MONAI GradCAM (baseline)"].append(_timed(per_study))
        runs["batched"].append(_timed(batched))
    base = runs["per-study MONAI GradCAM (baseline)"]
    rows, payload = [], {}
    for name, samples in runs.items():
        walls, cpus = [w for w, _ in samples], [c for _, c in samples]
        stats = {"wall_median_s": statistics.median(walls), "wall_min_s": min(walls), "cpu_median_s": statistics.median(cpus), "cpu_min_s": min(cpus)}
        speed = {"speedup_wall_median": statistics.median(w for w, _ in base) / stats["wall_median_s"],
                 "speedup_cpu_median": statistics.median(c for _, c in base) / stats["cpu_median_s"]}
        payload[name] = {**stats, **speed, "samples": samples}
        rows.append([name, stats["wall_median_s"], stats["wall_min_s"], stats["cpu_median_s"], stats["cpu_min_s"],
                     args.pairs / stats["wall_median_s"], speed["speedup_wall_median"], speed["speedup_cpu_median"]])
    markdown = (
        f"# Grad-CAM: batched vs per-study\n\n{args.pairs} (study, finding) pairs over {len(studies)} studies, the default medical model "
        f"(ResNet-18 at {args.size} px + frozen MiniLM + attention fusion), target layer `{layer.removeprefix('model.')}`, {args.threads} torch "
        f"thread(s), {args.rounds} alternated rounds in one process. Largest map difference {worst:.1e}.\n\n"
        "```bash\npython benchmarks/gradcam_batched.py " + " ".join(sys.argv[1:]) + "\n```\n\n"
        + table(["path", "wall s (median)", "wall s (min)", "CPU s (median)", "CPU s (min)", "pairs / s", "speed-up (wall)", "speed-up (CPU)"], rows)
        + f"\n\nMachine: {machine()}\n"
    )
    path = write_results("gradcam_batched", {"machine": machine(), "command": sys.argv[1:], "pairs": args.pairs, "max_abs_diff": worst,
                                             "baseline": "per-study MONAI GradCAM", "runs": payload}, markdown)
    print(path.read_text())


if __name__ == "__main__":
    main()
