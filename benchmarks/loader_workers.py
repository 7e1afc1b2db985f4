"""``data.num_workers=auto`` against the in-process loader (``num_workers=0``) on a medical training epoch.

The mmapps medical demo (DICOM radiographs + notes, the preprocessed-sample cache warm), the smoke
model at 64 px with augmentation, one training epoch per round through the real `Trainer`.
Rounds alternate (0 workers, auto) in one process (ABAB), >= 7 rounds; median and min of the epoch
wall time and of the CPU time (this process plus its worker processes, which exit after each round).

    python benchmarks/loader_workers.py [--rounds 7] [--studies 96] [--threads 1]
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, table, write_results  # noqa: E402

import torch  # noqa: E402


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def one_epoch(cfg, domain, splits, workers) -> tuple[float, float]:
    from mmapps.models.build import build_model, selected_modalities
    from mmapps.train.runtime import Runtime
    from mmapps.train.trainer import Trainer

    run_cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"num_workers": workers})})
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(run_cfg, domain, build_model(run_cfg, domain), splits.train, [], Path(tmp), Runtime(torch.device("cpu")), selected_modalities(run_cfg, domain))
        wall, cpu = time.perf_counter(), _cpu()
        trainer._train_epoch(0)
        del trainer  # persistent workers exit here, so their CPU time is counted
        gc.collect()
        return time.perf_counter() - wall, _cpu() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--studies", type=int, default=96)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from mmapps.domain import resolve, with_configured_labels
    from mmapps.plugins import get_domain
    from mmapps.train.sampling import resolve_num_workers
    from mmapps.workflows.resolve import ensure_data_root, resolve_config

    domain = get_domain("medical")
    overrides = [f"data.demo_n={args.studies}", "data.options.image_size=64", "data.options.augment=true", "train.batch_size=8", "train.progress=false", "train.tensorboard=false"]
    cfg = ensure_data_root(resolve_config(domain, "smoke", overrides=overrides), domain)
    domain = with_configured_labels(domain, cfg)
    splits = resolve(domain.build_datasets)(cfg)
    auto = resolve_num_workers("auto")
    one_epoch(cfg, domain, splits, 0)  # warm the sample cache and the text encoder
    times: dict[str, list[tuple[float, float]]] = {"0": [], "auto": []}
    for _ in range(args.rounds):
        times["0"].append(one_epoch(cfg, domain, splits, 0))
        times["auto"].append(one_epoch(cfg, domain, splits, "auto"))
    med = {k: (statistics.median(w for w, _ in v), min(w for w, _ in v), statistics.median(c for _, c in v), min(c for _, c in v)) for k, v in times.items()}
    ratio = med["0"][0] / med["auto"][0]
    rows = [[name, *values] for name, values in med.items()]
    markdown = (
        "# Loader workers: data.num_workers=auto vs 0\n\n"
        f"Medical demo, {len(splits.train)} training studies, smoke model at 64 px with augmentation, batch 8, one epoch per round; "
        f"baseline: num_workers=0 (loading in the training process). auto = {auto} worker(s) on this machine (cores - 1), persistent. "
        f"{args.rounds} rounds alternated ABAB in one process; CPU = this process + its workers.\n\n"
        + table(["num_workers", "median wall s", "min wall s", "median CPU s", "min CPU s"], rows)
        + f"\n\n**auto is {ratio:.2f}x the speed of 0 workers (median wall)**.\n\nMachine: {machine()}\n"
    )
    path = write_results("loader_workers", {"machine": machine(), "auto_workers": auto, "rounds": args.rounds, "times": times, "speedup_median_wall": ratio}, markdown)
    print(path.read_text())


if __name__ == "__main__":
    main()
