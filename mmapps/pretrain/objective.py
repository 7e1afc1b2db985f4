"""The trainer seam of pretraining: the loss of a `PretrainStep`, held-out validation, per-step loss logs."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import torch

from mmapps.pretrain.baseline import PositionMean, evaluate
from mmapps.pretrain.model import PretrainModel, PretrainStep
from mmapps.train.callbacks import Callback

STEPS_FILE = "pretrain_steps.csv"


def _unwrap(model: Any) -> PretrainModel:
    return model.module if hasattr(model, "module") else model


class PretrainObjective:
    """What `mmapps.train.trainer.Trainer` optimises and selects on instead of the task losses.

    ``loss`` returns the step's L = sum_m w_m L_m (+ lambda_c L_c) and its parts, keeping the parts
    of training steps (device tensors, read once per epoch by `PretrainLog`); ``validate`` is the
    held-out reconstruction loss (``recon``, lower is better) that selects checkpoints and stops early,
    over `held_out` (a loader of the whole held-out set, the same under DDP, where rank 0 evaluates)
    when given, else over the trainer's validation loader.
    """

    primary = "recon"
    higher_is_better = False

    def __init__(self, means: dict[str, PositionMean] | None = None, held_out: Any = None) -> None:
        self.means, self.held_out = means, held_out
        self.steps: list[dict[str, torch.Tensor]] = []

    def loss(self, outputs: PretrainStep, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if torch.is_grad_enabled():
            self.steps.append(outputs.parts)
        return outputs.total, outputs.parts

    def validate(self, model: Any, loader: Any, runtime: Any) -> dict[str, float]:
        return evaluate(_unwrap(model), self.held_out if self.held_out is not None else loader, runtime.device, self.means)


class PretrainLog(Callback):
    """Sets the mask epoch of the model, and writes each step's L_m, weight and total.

    Rows go to ``logs/pretrain_steps.csv`` (epoch, batch, step and one column per part) and to
    TensorBoard (``pretrain/<part>`` by step). A resumed run drops the rows of epochs after its checkpoint.
    """

    def __init__(self, objective: PretrainObjective, log_dir: Path, tensorboard: bool = True) -> None:
        self.objective, self.path, self.tensorboard = objective, Path(log_dir) / STEPS_FILE, tensorboard
        self._writer = None
        self._start_batch = 0

    def on_fit_start(self, trainer: Any) -> None:
        _unwrap(trainer.model).epoch = trainer.progress.next_epoch
        self._start_batch = trainer.progress.next_batch
        self.objective.steps.clear()
        if not trainer.runtime.is_main:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            with self.path.open() as handle:
                rows = list(csv.DictReader(handle))
            header = list(rows[0].keys()) if rows else None
            keep = [r for r in rows if int(r["epoch"]) < trainer.progress.next_epoch or (int(r["epoch"]) == trainer.progress.next_epoch and int(r["batch"]) < self._start_batch)]
            with self.path.open("w", newline="") as handle:
                if header:
                    writer = csv.DictWriter(handle, fieldnames=header)
                    writer.writeheader()
                    writer.writerows(keep)
        if self.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(self.path.parent / "tensorboard"))
            except ImportError:
                self._writer = None

    def on_epoch_end(self, trainer: Any, epoch: int, metrics: dict[str, Any]) -> None:
        _unwrap(trainer.model).epoch = epoch + 1
        steps, self.objective.steps = self.objective.steps, []
        start, self._start_batch = self._start_batch, 0
        if not trainer.runtime.is_main or not steps:
            return
        keys = sorted({k for parts in steps for k in parts})
        values = torch.stack([torch.stack([parts.get(k, torch.tensor(float("nan"), device=next(iter(parts.values())).device)).float() for k in keys]) for parts in steps]).cpu().tolist()
        header = ["epoch", "batch", "step", *keys]
        exists = self.path.exists() and self.path.stat().st_size > 0
        if exists:
            with self.path.open() as handle:
                header = next(csv.reader(handle))
        with self.path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=header, extrasaction="ignore")
            if not exists:
                writer.writeheader()
            for i, row in enumerate(values):
                batch = start + i
                step = epoch * trainer.batches_per_epoch + batch
                writer.writerow({"epoch": epoch, "batch": batch, "step": step, **dict(zip(keys, row))})
                if self._writer is not None:
                    for key, value in zip(keys, row):
                        self._writer.add_scalar(f"pretrain/{key}", value, step)
        if self._writer is not None:
            self._writer.flush()

    def on_fit_end(self, trainer: Any) -> None:
        if self._writer is not None:
            self._writer.close()
