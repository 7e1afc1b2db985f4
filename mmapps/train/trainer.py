"""One trainer for every domain: the loop, devices, precision, checkpoints, early stopping."""

from __future__ import annotations

import inspect
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset

from mmapps.config import RunConfig, config_to_yaml
from mmapps.domain import Domain, resolve
from mmapps.evaluation.records import PredictionRecord, predict_records
from mmapps.finetune import apply_finetune, merged_copy, parameter_summary, save_adapters
from mmapps.tasks.metrics import check_finite_predictions
from mmapps.train import checkpoint as ckpt
from mmapps.train.callbacks import Callback
from mmapps.train.loaders import make_loader, make_train_loader
from mmapps.train.logs import EpochLogger
from mmapps.train.optim import build_optimizer
from mmapps.train.runtime import Runtime, maybe_no_sync
from mmapps.train.schedule import warmup_cosine
from mmapps.train.state import Progress, pack_state, restore_rng, unpack_progress

__all__ = ["FitResult", "Trainer", "compute_metrics", "make_loader", "primary_key", "build_loss"]


@dataclass
class FitResult:
    """What `Trainer.fit` did: epochs run, the best validation value of the primary metric and when."""

    epochs_run: int
    best_epoch: int
    best_metric: float
    stopped_early: bool
    history: list[dict[str, Any]] = field(default_factory=list)
    best_step: int = 0  # optimiser steps taken when the best weights were saved


def compute_metrics(domain: Domain, records: dict[str, list[PredictionRecord]], cfg: RunConfig, val_records: dict[str, list[PredictionRecord]] | None = None) -> dict[str, float]:
    """Each task's dataset-level metrics, keys prefixed by the task name when a domain has several tasks."""
    metrics: dict[str, float] = {}
    for task in domain.tasks:
        if task.name not in records:
            continue
        check_finite_predictions(records[task.name], task.name)
        fn = resolve(task.metrics)
        kwargs = {"val_records": (val_records or {}).get(task.name)} if "val_records" in inspect.signature(fn).parameters else {}
        values = fn(records[task.name], cfg, **kwargs)
        prefix = f"{task.name}/" if len(domain.tasks) > 1 else ""
        metrics.update({f"{prefix}{k}": v for k, v in values.items()})
    return metrics


def primary_key(domain: Domain) -> str:
    task = domain.primary_task
    return f"{task.name}/{task.primary_metric}" if len(domain.tasks) > 1 else task.primary_metric


def build_loss(ref: Any, cfg: RunConfig, train_set: Any, task: str | None = None) -> Any:
    """Resolve a `TaskSpec.losses` reference: a function is used as is; a class is built once per
    run as ``cls(cfg, train_set)`` (losses that depend on the training data, such as pos_weight),
    with ``task=<task name>`` when its constructor takes a ``task`` parameter."""
    loss = resolve(ref)
    if not inspect.isclass(loss):
        return loss
    return loss(cfg, train_set, task=task) if task is not None and "task" in inspect.signature(loss).parameters else loss(cfg, train_set)


class Trainer:
    """Fits a model on a domain's train split, selecting on the validation primary metric.

    Resume is exact: a run killed at any point (mid-epoch or during a checkpoint write) and
    resumed from ``checkpoints/resume.safetensors`` ends with bit-equal weights, given the same device and threads
    (see `mmapps.train.state` for what is saved and why that suffices).

    Args:
        cfg: the resolved run config.
        domain: the domain (tasks, losses, metrics).
        model: the model (wrapped in DDP here when distributed).
        train_set, val_set: datasets of `Sample`s; a train set with ``set_epoch`` learns the
            epoch in whichever process loads its items.
        run_dir: the run directory (checkpoints/ and logs/ are written in it, main process only).
        runtime: device, precision and distributed coordinates.
        modalities: modalities the model uses (collated).
        callbacks: hooks (see `mmapps.train.callbacks`).
        objective: None trains on the domain's task losses and selects on its primary metric;
            otherwise an object with ``loss(outputs, batch) -> (total, parts)``,
            ``validate(model, val_loader, runtime) -> dict[str, float]`` and the attributes
            ``primary`` (the key of that dict that selects and stops) and ``higher_is_better``
            (self-supervised pretraining, `mmapps.pretrain.objective`).
    """

    def __init__(self, cfg: RunConfig, domain: Domain, model: nn.Module, train_set: Dataset, val_set: Dataset, run_dir: Path, runtime: Runtime, modalities: Sequence[str], callbacks: Sequence[Callback] = (), objective: Any = None) -> None:
        self.cfg, self.domain, self.runtime, self.run_dir = cfg, domain, runtime, Path(run_dir)
        self.finetune_plan = apply_finetune(model, cfg.finetune)  # trainable parts, frozen norms, adapters (mmapps.finetune)
        self.parameter_counts = parameter_summary(model)
        self.model = model.to(runtime.device)
        if runtime.distributed:
            device_ids = [runtime.local_rank] if runtime.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids, find_unused_parameters=cfg.train.find_unused_parameters)
        self.train_loader, self.train_batches = make_train_loader(train_set, cfg, domain, modalities, runtime)
        self.val_loader = make_loader(val_set, cfg, domain, modalities, runtime, train=False, split="val") if len(val_set) else None
        self.callbacks = list(callbacks)
        self._batch_hooks = [cb for cb in self.callbacks if type(cb).on_train_batch_end is not Callback.on_train_batch_end]
        self.optimizer = build_optimizer((p for p in self.model.parameters() if p.requires_grad), cfg.train, runtime.device)
        self.objective = objective
        self.losses = {} if objective is not None else {t.name: [(name, build_loss(ref, cfg, train_set, t.name), weight) for name, (ref, weight) in t.losses.items()] for t in domain.tasks}
        self.batches_per_epoch = len(self.train_loader) if cfg.train.max_steps_per_epoch is None else min(len(self.train_loader), cfg.train.max_steps_per_epoch)
        self.optimizer_steps_per_epoch = max(1, math.ceil(self.batches_per_epoch / cfg.train.grad_accum_steps))
        self.epochs = cfg.train.epochs if cfg.train.max_steps is None else math.ceil(cfg.train.max_steps / self.optimizer_steps_per_epoch)
        self.total_steps = self.optimizer_steps_per_epoch * self.epochs if cfg.train.max_steps is None else cfg.train.max_steps
        self.warmup_steps = int(cfg.train.warmup_fraction * self.total_steps)
        self.global_step = 0
        self.progress = Progress()
        self.checkpoint_dir = self.run_dir / "checkpoints"
        self.labels = {t.name: list(t.labels) for t in domain.tasks}
        self.primary = objective.primary if objective is not None else primary_key(domain)
        self.higher_is_better = objective.higher_is_better if objective is not None else domain.primary_task.higher_is_better

    # -- losses -------------------------------------------------------------------------------
    def compute_loss(self, outputs: dict[str, Any], batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The weighted total loss and its detached parts (device tensors: reading them syncs)."""
        if self.objective is not None:
            return self.objective.loss(outputs, batch)
        total = torch.zeros((), device=self.runtime.device)
        parts: dict[str, torch.Tensor] = {}
        for task, losses in self.losses.items():
            if task not in batch.targets:
                continue
            for name, fn, weight in losses:
                value = fn(outputs[task], batch.targets[task], batch)
                parts[f"loss/{task}/{name}"] = value.detach()
                total = total + weight * value.float()
        return total, parts

    # -- the loop -----------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> FitResult:
        train_cfg = self.cfg.train
        logger = EpochLogger(self.run_dir / "logs", tensorboard=train_cfg.tensorboard) if self.runtime.is_main else None
        if resume:
            self._restore(self.checkpoint_dir / ckpt.TRAINING_STATE_FILE)
            if logger:
                logger.truncate_after(self.progress.next_epoch - 1)
        progress = self.progress
        for cb in self.callbacks:
            cb.on_fit_start(self)
        stopped_early = False
        epoch = progress.next_epoch - 1
        for epoch in range(progress.next_epoch, self.epochs):
            started = time.perf_counter()
            train_loss = self._train_epoch(epoch, progress.next_batch)
            progress.next_epoch, progress.next_batch, progress.epoch_loss_sum, progress.epoch_loss_count = epoch + 1, 0, None, 0
            row: dict[str, Any] = {"train/loss": train_loss, "lr": self.optimizer.param_groups[0]["lr"]}
            value = math.nan
            if self._validation_due(epoch):
                value = self._validate(row)
                if self._improved(value, progress.best_metric) or (self.val_loader is None):
                    progress.best_metric, progress.best_epoch, progress.bad_epochs = value, epoch, 0
                    # without validation the best weights are the last: written once, at the end (many short epochs under a label budget)
                    if self.runtime.is_main and (self.val_loader is not None or epoch == self.epochs - 1):
                        self.save_inference(self.checkpoint_dir / "best.safetensors", epoch)
                else:
                    progress.bad_epochs += 1
            stop = train_cfg.patience is not None and progress.bad_epochs >= train_cfg.patience
            row["seconds"] = time.perf_counter() - started
            progress.history.append({"epoch": epoch, **row})
            if self.runtime.is_main and ((epoch + 1) % train_cfg.checkpoint_every == 0 or epoch == self.epochs - 1 or stop):
                self._save_state()
            if logger:
                logger.log(epoch, row)
                self._print_epoch(epoch, row, value)
            self._barrier()
            for cb in self.callbacks:
                cb.on_epoch_end(self, epoch, row)
            if stop:
                stopped_early = True
                break
        if logger:
            logger.close()
        for cb in self.callbacks:
            cb.on_fit_end(self)
        return FitResult(epoch + 1, progress.best_epoch, progress.best_metric, stopped_early, progress.history, self._steps_after(progress.best_epoch))

    def _steps_after(self, epoch: int) -> int:
        """Optimiser steps taken by the end of `epoch` (every epoch but a ``max_steps`` run's last has the same number)."""
        return min((epoch + 1) * self.optimizer_steps_per_epoch, self.total_steps)

    def _validation_due(self, epoch: int) -> bool:
        """Whether `epoch`'s end validates (selects, counts patience): every epoch, or with ``train.val_every_steps``
        N the epochs whose end reaches a new multiple of N optimiser steps, and the last."""
        every = self.cfg.train.val_every_steps
        if every is None or epoch == self.epochs - 1:
            return True
        return self._steps_after(epoch) // every > (self._steps_after(epoch - 1) // every if epoch > 0 else 0)

    def _validate(self, row: dict[str, Any]) -> float:
        """The selecting value on the validation split (NaN without one); its metrics are added to `row`."""
        if self.val_loader is None:
            return math.nan
        if self.objective is not None:
            val_metrics = self.objective.validate(self.model, self.val_loader, self.runtime) if self.runtime.is_main else {}
        else:
            val_records = predict_records(self.model, self.val_loader, self.domain, self.runtime)
            quick = self.cfg.model_copy(update={"eval": self.cfg.eval.model_copy(update={"bootstrap_resamples": 0})})
            val_metrics = compute_metrics(self.domain, val_records, quick) if self.runtime.is_main else {}
        row.update({f"val/{k}": v for k, v in val_metrics.items() if isinstance(v, (int, float))})
        return self._broadcast(float(val_metrics.get(self.primary, math.nan)))

    def _train_epoch(self, epoch: int, start_batch: int = 0) -> float:
        """Train one epoch from batch `start_batch`; the mean batch loss, read from the device once at the end."""
        train_cfg = self.cfg.train
        self.model.train()
        self.train_batches.set_epoch(epoch, start_batch)
        limit, accum = self.batches_per_epoch, train_cfg.grad_accum_steps
        progress = self.progress
        total = progress.epoch_loss_sum if progress.epoch_loss_sum is not None else torch.zeros((), device=self.runtime.device)
        count = progress.epoch_loss_count
        display = self._progress(limit, epoch, start_batch)
        every = train_cfg.checkpoint_every_steps
        for step, batch in enumerate(self.train_loader, start=start_batch):
            if step >= limit or self.global_step >= self.total_steps:  # train.max_steps may end the last epoch early
                break
            batch = batch.to(self.runtime.device)
            sync = (step + 1) % accum == 0 or step + 1 == limit
            with maybe_no_sync(self.model, not sync):
                with self.runtime.autocast():
                    outputs = self.model(batch)
                    loss, _ = self.compute_loss(outputs, batch)
                (loss / accum).backward()
            total += loss.detach()
            count += 1
            if sync:
                self._optimizer_step()
                if every is not None and self.global_step % every == 0 and step + 1 < limit and self.runtime.is_main:
                    progress.next_epoch, progress.next_batch, progress.epoch_loss_sum, progress.epoch_loss_count = epoch, step + 1, total, count
                    self._save_state()
            if display and (count % train_cfg.log_every_steps == 0 or step + 1 == limit):
                display[0].update(display[1], completed=step + 1, description=f"epoch {epoch + 1}/{self.epochs} loss {float(total) / count:.4f}")
            for cb in self._batch_hooks:
                cb.on_train_batch_end(self, float(loss.detach()))
        if display:
            display[0].stop()
        return float(total) / max(count, 1)

    def _optimizer_step(self) -> None:
        train_cfg = self.cfg.train
        if train_cfg.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), train_cfg.grad_clip)
        scale = warmup_cosine(self.global_step, self.total_steps, self.warmup_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = train_cfg.lr * scale
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.global_step += 1

    # -- state --------------------------------------------------------------------------------
    @property
    def schedule(self) -> dict[str, int]:
        return {"total_steps": self.total_steps, "warmup_steps": self.warmup_steps, "batches_per_epoch": self.batches_per_epoch}

    def _save_state(self) -> None:
        state = pack_state(ckpt.unwrap(self.model).state_dict(), self.optimizer.state_dict(), self.global_step, self.progress, self.schedule, config_to_yaml(self.cfg), ckpt.FORMAT)
        ckpt.save_training_state(self.checkpoint_dir / ckpt.TRAINING_STATE_FILE, state)
        self.save_inference(self.checkpoint_dir / "last.safetensors", self.progress.next_epoch - 1)

    def _restore(self, path: Path) -> None:
        state = ckpt.load_training_state(path)
        ckpt.load_weights(self.model, state["model"], path)
        self.optimizer.load_state_dict(state["optimizer"])
        self.global_step = int(state["global_step"])
        self.progress = unpack_progress(state, self.schedule, path, self.runtime.device)
        restore_rng(state)

    # -- helpers ------------------------------------------------------------------------------
    def _improved(self, value: float, best: float) -> bool:
        if math.isnan(value):
            return math.isnan(best)
        if math.isnan(best):
            return True
        return value > best if self.higher_is_better else value < best

    def save_inference(self, path: Path, epoch: int) -> None:
        """A normal checkpoint (adapters merged in), plus ``<name>.adapters.safetensors`` with adapters (`mmapps.finetune`)."""
        model = ckpt.unwrap(self.model)
        ckpt.save_inference_checkpoint(path, merged_copy(model), config_to_yaml(self.cfg), self.labels, {"epoch": epoch})
        if self.finetune_plan.uses_adapters and self.cfg.finetune.save_adapters:
            save_adapters(path.with_name(path.name.replace(".safetensors", ".adapters.safetensors")), model, config_to_yaml(self.cfg), {"epoch": epoch})

    def _broadcast(self, value: float) -> float:
        if not self.runtime.distributed:
            return value
        import torch.distributed as dist

        holder = [value]
        dist.broadcast_object_list(holder, src=0)
        return float(holder[0])

    def _barrier(self) -> None:
        if self.runtime.distributed:
            import torch.distributed as dist

            dist.barrier()

    def _progress(self, total: int, epoch: int, done: int = 0) -> tuple[Any, Any] | None:
        if not (self.cfg.train.progress and self.runtime.is_main and sys.stderr.isatty()):
            return None
        from rich.progress import BarColumn, Progress as Bar, TextColumn, TimeRemainingColumn

        bar = Bar(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"), TimeRemainingColumn(), transient=True)
        bar.start()
        return bar, bar.add_task(f"epoch {epoch + 1}", total=total, completed=done)

    def _print_epoch(self, epoch: int, row: dict[str, Any], value: float) -> None:
        if not self.cfg.train.progress:
            return
        val = f", val {self.primary} {value:.4f}" if any(k.startswith("val/") for k in row) else ""
        print(f"epoch {epoch + 1}/{self.epochs}: train loss {row['train/loss']:.4f}{val} ({row.get('seconds', 0):.1f} s)", file=sys.stderr, flush=True)
