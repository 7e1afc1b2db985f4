"""Training and inference samples/s and peak memory of each fusion strategy on synthetic batches.

Each fusion runs in its own subprocess so that peak memory (CUDA: max allocated; CPU: peak RSS
growth over the set-up) is its own. Baseline for the ratio column: concat fusion.

    python benchmarks/fusion_throughput.py [--batch 32] [--steps 30] [--device auto]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))

from common import machine, table, write_results  # noqa: E402

MODALITIES = {"a": 16, "b": 24, "c": 8}  # modality -> tokens per sample; every token is 64 wide


def measure(fusion: str, batch: int, steps: int, device: str, threads: int = 1) -> dict:
    import torch
    from torch import nn

    from mmapps.data.sample import Batch, ModalityBatch
    from mmapps.models.build import register_core_parts
    from mmapps.models.fusion_model import FusionModel
    from mmapps.registry import ENCODERS, FUSIONS, HEADS

    register_core_parts()
    torch.set_num_threads(threads)
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
    torch.manual_seed(0)
    encoders = nn.ModuleDict({m: ENCODERS.get("features_mlp")(dim=64, in_features=64) for m in MODALITIES})
    fusion_module = FUSIONS.get(fusion)({m: 64 for m in MODALITIES}, dim=64)
    head = HEADS.get("multilabel")
    heads = nn.ModuleDict({"t": nn.ModuleDict({m: head(64, 14) for m in MODALITIES}) if fusion_module.level == "predictions" else head(64, 14)})
    model = FusionModel(encoders, fusion_module, heads).to(dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    inputs = {m: ModalityBatch(torch.randn(batch, t, 64, device=dev), torch.rand(batch, device=dev) > 0.1, torch.ones(batch, t, dtype=torch.bool, device=dev)) for m, t in MODALITIES.items()}
    data = Batch(inputs, {}, [str(i) for i in range(batch)], ["g"] * batch, [{}] * batch)
    target = (torch.rand(batch, 14, device=dev) > 0.5).float()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else __import__("contextlib").nullcontext()
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def train_step():
        with autocast:
            loss = nn.functional.binary_cross_entropy_with_logits(model(data)["t"].float(), target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(3):
        train_step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        train_step()
    sync()
    train_rate = batch * steps / (time.perf_counter() - start)
    model.eval()
    with torch.no_grad(), autocast:
        for _ in range(3):
            model(data)
        sync()
        start = time.perf_counter()
        for _ in range(steps):
            model(data)
        sync()
    infer_rate = batch * steps / (time.perf_counter() - start)
    if dev.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024
    params = sum(p.numel() for p in model.parameters())
    return {"fusion": fusion, "device": str(dev), "train_samples_per_s": train_rate, "infer_samples_per_s": infer_rate, "peak_memory_mb": peak_mb, "parameters": params}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.batch, args.steps, args.device, args.threads)))
        return
    __import__("torch").set_num_threads(args.threads)  # so the machine line reports what the subprocesses used
    rows = []
    for fusion in ("concat", "late", "gated", "lmf", "attention"):
        out = subprocess.run([sys.executable, __file__, "--one", fusion, "--batch", str(args.batch), "--steps", str(args.steps), "--device", args.device, "--threads", str(args.threads)], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = rows[0]["train_samples_per_s"]
    md_rows = [[r["fusion"], r["device"], r["train_samples_per_s"], r["train_samples_per_s"] / base, r["infer_samples_per_s"], r["peak_memory_mb"], r["parameters"]] for r in rows]
    markdown = (
        f"# Fusion throughput\n\nSynthetic batch of {args.batch} samples, 3 modalities x (16, 24, 8) tokens x 64, 14-label head; "
        f"{args.steps} timed steps after 3 warm-up steps, {args.threads} torch thread(s). Ratio = train samples/s relative to concat (baseline).\n\n"
        + table(["fusion", "device", "train samples/s", "train ratio vs concat", "inference samples/s", "peak memory MB", "parameters"], md_rows)
        + f"\n\nMachine: {machine()}\n"
    )
    path = write_results("fusion_throughput", {"machine": machine(), "batch": args.batch, "steps": args.steps, "rows": rows}, markdown)
    print(path.read_text())


if __name__ == "__main__":
    main()
