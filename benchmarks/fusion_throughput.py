"""Training and inference samples/s and peak memory of each fusion strategy on synthetic batches.

Timing: every configuration is built in this one process and timed in alternated rounds (A B C ...
A B C ..., ``--rounds`` >= 7), each round ``--steps`` training steps (forward, backward, the trainer's
AdamW) then ``--steps`` inference forwards; median and min over rounds of wall and CPU time.
Baseline for the ratio columns: concat fusion. Peak memory is measured apart, each configuration in
its own subprocess (CUDA: max allocated; CPU: peak RSS growth over the set-up).

Rows beyond the five fusions: ``attention, attention_dropout=0.1`` (attention-probability dropout,
which forces the unfused math kernel on CPU: the previous default's behaviour) and ``attention,
no key mask`` (the same model with its key-padding mask removed: the mask's cost in inference).

    python benchmarks/fusion_throughput.py [--batch 32] [--steps 10] [--rounds 7] [--device auto]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))

from common import machine, table, write_results  # noqa: E402

from mmapps.report.complexity import proc_status_kb  # noqa: E402

MODALITIES = {"a": 16, "b": 24, "c": 8}  # modality -> tokens per sample; every token is 64 wide
CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "concat": ("concat", {}),
    "late": ("late", {}),
    "gated": ("gated", {}),
    "lmf": ("lmf", {}),
    "attention": ("attention", {}),
    "attention, attention_dropout=0.1": ("attention", {"attention_dropout": 0.1}),
    "attention, no key mask": ("attention", {}),
}


def build(config: str, batch: int, device: str) -> tuple[Callable[[], None], Callable[[], None], Callable[[], None], int, str]:
    """(train_step, infer_step, sync, parameters, device) for one configuration, warmed up."""
    import torch
    from torch import nn

    from mmapps.config import TrainConfig
    from mmapps.data.sample import Batch, ModalityBatch
    from mmapps.models.build import register_core_parts
    from mmapps.models.fusion_model import FusionModel
    from mmapps.registry import ENCODERS, FUSIONS, HEADS
    from mmapps.train.optim import build_optimizer

    register_core_parts()
    fusion, options = CONFIGS[config]
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
    torch.manual_seed(0)
    encoders = nn.ModuleDict({m: ENCODERS.get("features_mlp")(dim=64, in_features=64) for m in MODALITIES})
    fusion_module = FUSIONS.get(fusion)({m: 64 for m in MODALITIES}, dim=64, **options)
    if config.endswith("no key mask"):
        encoder = fusion_module.transformer
        encoder.forward = lambda x, mask=None: type(encoder).forward(encoder, x, None)  # ablation: the mask removed
    head = HEADS.get("multilabel")
    heads = nn.ModuleDict({"t": nn.ModuleDict({m: head(64, 14) for m in MODALITIES}) if fusion_module.level == "predictions" else head(64, 14)})
    model = FusionModel(encoders, fusion_module, heads).to(dev)
    optimizer = build_optimizer(model.parameters(), TrainConfig(lr=1e-3), dev)  # the trainer's AdamW (fused where available)
    inputs = {m: ModalityBatch(torch.randn(batch, t, 64, device=dev), torch.rand(batch, device=dev) > 0.1, torch.ones(batch, t, dtype=torch.bool, device=dev)) for m, t in MODALITIES.items()}
    data = Batch(inputs, {}, [str(i) for i in range(batch)], ["g"] * batch, [{}] * batch)
    target = (torch.rand(batch, 14, device=dev) > 0.5).float()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else contextlib.nullcontext()
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def train_step() -> None:
        model.train()
        with autocast:
            loss = nn.functional.binary_cross_entropy_with_logits(model(data)["t"].float(), target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def infer_step() -> None:
        model.eval()
        with torch.no_grad(), autocast:
            model(data)

    for _ in range(3):
        train_step()
        infer_step()
    sync()
    return train_step, infer_step, sync, sum(p.numel() for p in model.parameters()), str(dev)


def peak_memory(config: str, batch: int, steps: int, device: str) -> float:
    """Peak memory (MB) of `steps` training steps and inferences of one configuration (run in a subprocess).

    CPU: growth of the resident set's high-water mark over the model's own set-up. The peak of
    ``import torch`` would otherwise hide it, so on Linux the mark is reset first (``clear_refs`` 5).
    """
    import torch

    train_step, infer_step, sync, _, dev = build(config, batch, device)
    if dev.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    try:
        Path("/proc/self/clear_refs").write_text("5")
        base_kb = proc_status_kb("VmRSS")
    except OSError:
        base_kb = None
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(steps):
        train_step()
        infer_step()
    sync()
    if dev.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    peak_kb = proc_status_kb("VmHWM")
    if base_kb is not None and peak_kb is not None:
        return (peak_kb - base_kb) / 1024
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024


def timed(fn: Callable[[], None], steps: int, sync: Callable[[], None]) -> tuple[float, float]:
    """(wall s, CPU s) of `steps` calls."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        fn()
    sync()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="steps per round and phase")
    parser.add_argument("--rounds", type=int, default=7, help="alternated rounds (>= 7)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--memory-of", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.memory_of:
        print(json.dumps({"peak_memory_mb": peak_memory(args.memory_of, args.batch, args.steps, args.device)}))
        return
    built = {name: build(name, args.batch, args.device) for name in CONFIGS}
    samples: dict[str, dict[str, list[float]]] = {name: {"train_wall": [], "train_cpu": [], "infer_wall": [], "infer_cpu": []} for name in CONFIGS}
    for _ in range(args.rounds):
        for name, (train_step, infer_step, sync, _, _) in built.items():
            for phase, fn in (("train", train_step), ("infer", infer_step)):
                wall, cpu = timed(fn, args.steps, sync)
                samples[name][f"{phase}_wall"].append(wall / args.steps)
                samples[name][f"{phase}_cpu"].append(cpu / args.steps)
    rows = []
    for name, (_, _, _, params, dev) in built.items():
        memory = subprocess.run([sys.executable, __file__, "--memory-of", name, "--batch", str(args.batch), "--steps", str(args.steps),
                                 "--device", args.device, "--threads", str(args.threads)], capture_output=True, text=True, check=True)
        stats = {f"{key}_{agg}_s": fn(values) for key, values in samples[name].items() for agg, fn in (("median", statistics.median), ("min", min))}
        rows.append({"config": name, "device": dev, "parameters": params, **stats, "samples": samples[name],
                     "peak_memory_mb": json.loads(memory.stdout.strip().splitlines()[-1])["peak_memory_mb"]})
    base = rows[0]

    def ratio(row: dict, key: str) -> float:
        return row[key] / base[key]

    md_rows = [[r["config"], r["device"], args.batch / r["train_wall_median_s"], ratio(r, "train_wall_median_s"), ratio(r, "train_wall_min_s"),
                ratio(r, "train_cpu_median_s"), ratio(r, "train_cpu_min_s"), args.batch / r["infer_wall_median_s"], ratio(r, "infer_wall_median_s"),
                ratio(r, "infer_cpu_median_s"), r["peak_memory_mb"], r["parameters"]] for r in rows]
    for row in rows:
        row["train_time_ratio_vs_concat"] = {k: ratio(row, f"train_{k}_s") for k in ("wall_median", "wall_min", "cpu_median", "cpu_min")}
    markdown = (
        f"# Fusion throughput\n\nSynthetic batch of {args.batch} samples, 3 modalities x (16, 24, 8) tokens x 64 (about 10 % of samples "
        f"miss each modality), 14-label head, the trainer's AdamW. {args.rounds} alternated rounds in one process, each {args.steps} "
        f"training steps then {args.steps} inference forwards per configuration; {args.threads} torch thread(s). Ratios are time per "
        "step relative to concat (the baseline): > 1 is slower. Rates are from the median wall time.\n\n"
        "```bash\npython benchmarks/fusion_throughput.py " + " ".join(sys.argv[1:]) + "\n```\n\n"
        + table(["configuration", "device", "train samples/s", "train time vs concat (wall median)", "(wall min)", "(CPU median)", "(CPU min)",
                 "inference samples/s", "inference time vs concat (wall median)", "(CPU median)", "peak memory MB", "parameters"], md_rows)
        + f"\n\nMachine: {machine()}\n"
    )
    path = write_results("fusion_throughput", {"machine": machine(), "command": sys.argv[1:], "batch": args.batch, "steps": args.steps,
                                               "rounds": args.rounds, "baseline": "concat", "rows": rows}, markdown)
    print(path.read_text())


if __name__ == "__main__":
    main()
