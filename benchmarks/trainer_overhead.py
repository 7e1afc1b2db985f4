"""The trainer's overhead against a plain PyTorch loop over the same model and data.

Model: attention fusion of two small encoders (tabular MLP + features MLP), batch 32, so the step
is small and any per-step overhead shows. Both loops see the same collated batches, AdamW, loss,
gradient clipping and learning-rate schedule; the trainer adds its own bookkeeping (loss parts,
schedule, callbacks, per-epoch checkpoint). Runs alternate (plain, trainer) `--repeats` times;
the figure is the median ratio of epoch times. Goal: under 10%.

    python benchmarks/trainer_overhead.py [--samples 8192] [--epochs 2] [--repeats 5] [--threads 1]
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

import torch  # noqa: E402
from torch import nn  # noqa: E402

from mmapps.data import DatasetSplits, Sample  # noqa: E402
from mmapps.domain import Domain, ModalitySpec, TaskSpec  # noqa: E402
from mmapps.models.build import build_model, selected_modalities  # noqa: E402
from mmapps.train.runtime import Runtime  # noqa: E402
from mmapps.train.schedule import warmup_cosine  # noqa: E402
from mmapps.train.trainer import Trainer, make_loader  # noqa: E402
from mmapps.workflows.resolve import resolve_config  # noqa: E402


class SyntheticDataset(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.tab = torch.randn(n, 12, generator=g)
        self.seq = torch.randn(n, 8, 32, generator=g)
        self.y = torch.randint(0, 4, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> Sample:
        return Sample(str(i), str(i), {"tab": self.tab[i], "seq": self.seq[i]}, {"y": self.y[i]})


def bench_domain() -> Domain:
    model = {
        "dim": 64,
        "encoders": {"tab": {"name": "tabular_mlp", "options": {"in_features": 12}}, "seq": {"name": "features_mlp", "options": {"in_features": 32}}},
        "fusion": {"name": "attention", "options": {"layers": 1, "heads": 4}},
    }
    recipe = {"model": model, "train": {"batch_size": 32, "progress": False, "tensorboard": False, "lr": 1e-3}}
    return Domain(
        name="bench",
        description="synthetic",
        modalities=(ModalitySpec("tab", "tabular", "memory", "fixed"), ModalitySpec("seq", "features", "memory", "padded")),
        tasks=(TaskSpec("y", "multiclass", ("a", "b", "c", "d"), {"ce": ("mmapps.tasks.losses:multiclass_cross_entropy", 1.0)}, "mmapps.tasks.postprocess:softmax_scores", "mmapps.tasks.metrics:multiclass_metrics", "accuracy"),),
        build_datasets=lambda cfg: None,
        write_demo_data=lambda out, n, seed: out,
        recipes={"default": recipe, "smoke": recipe},
    )


def plain_loop(model: nn.Module, loader, epochs: int, lr: float, clip: float) -> float:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.01)
    total = epochs * len(loader)
    step = 0
    model.train()
    start = time.perf_counter(), time.process_time()
    for _ in range(epochs):
        for batch in loader:
            loss = nn.functional.cross_entropy(model(batch)["y"], batch.targets["y"])
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), clip)
            for group in optimizer.param_groups:
                group["lr"] = lr * warmup_cosine(step, total, int(0.05 * total))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
    return time.perf_counter() - start[0], time.process_time() - start[1]


def trainer_loop(cfg, domain, model, dataset, epochs: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, domain, model, dataset, [], Path(tmp), Runtime(torch.device("cpu")), ["seq", "tab"])
        start = time.perf_counter(), time.process_time()
        trainer.fit()
        return time.perf_counter() - start[0], time.process_time() - start[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=8192)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 keeps timings steady on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    domain = bench_domain()
    cfg = resolve_config(domain, "default", extra={"train": {"epochs": args.epochs, "patience": None}})
    dataset = SyntheticDataset(args.samples)
    runtime = Runtime(torch.device("cpu"))
    plain_times, trainer_times = [], []
    for repeat in range(args.repeats):
        torch.manual_seed(repeat)
        model = build_model(cfg, domain)
        loader = make_loader(dataset, cfg, domain, selected_modalities(cfg, domain), runtime, train=True, split="train")
        plain_times.append(plain_loop(model, loader, args.epochs, cfg.train.lr, cfg.train.grad_clip))
        torch.manual_seed(repeat)
        trainer_times.append(trainer_loop(cfg, domain, build_model(cfg, domain), dataset, args.epochs))
    ratios = [t[0] / p[0] for t, p in zip(trainer_times, plain_times)]
    cpu_ratios = [t[1] / p[1] for t, p in zip(trainer_times, plain_times)]
    overhead = statistics.median(ratios) - 1.0
    cpu_overhead = statistics.median(cpu_ratios) - 1.0
    steps = args.epochs * -(-args.samples // 32)
    rows = [[i + 1, p[0], t[0], r - 1.0, p[1], t[1], c - 1.0] for i, (p, t, r, c) in enumerate(zip(plain_times, trainer_times, ratios, cpu_ratios))]
    markdown = (
        "# Trainer overhead\n\n"
        f"Attention fusion of two small encoders, batch 32, {args.samples} samples x {args.epochs} epochs = {steps} steps per run; "
        "baseline: a plain PyTorch loop (same model, loader, clipping, schedule; torch's default AdamW, where the trainer uses the fused kernel). Trainer runs include its per-epoch checkpoints.\n\n"
        + table(["repeat", "plain wall s", "trainer wall s", "wall overhead", "plain CPU s", "trainer CPU s", "CPU overhead"], rows)
        + f"\n\n**Median overhead: {overhead * 100:.1f}% wall-clock, {cpu_overhead * 100:.1f}% CPU time** (goal < 10%). "
        f"CPU time (process time) is the steadier figure on a shared machine.\n\nMachine: {machine()}\n"
    )
    path = write_results("trainer_overhead", {"machine": machine(), "samples": args.samples, "epochs": args.epochs, "plain_s": plain_times, "trainer_s": trainer_times, "median_overhead": overhead, "median_cpu_overhead": cpu_overhead}, markdown)
    print(path.read_text())


if __name__ == "__main__":
    main()
