"""One trainer for every domain: the loop, devices, precision, checkpoints, early stopping."""

from __future__ import annotations

import functools
import inspect
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler

from mmapps.config import RunConfig, config_to_yaml
from mmapps.data.sample import collate_samples
from mmapps.domain import Domain, resolve
from mmapps.evaluation.records import PredictionRecord, predict_records
from mmapps.train import checkpoint as ckpt
from mmapps.train.callbacks import Callback
from mmapps.train.logs import EpochLogger
from mmapps.train.runtime import Runtime, maybe_no_sync
from mmapps.train.schedule import warmup_cosine


@dataclass
class FitResult:
    """What `Trainer.fit` did: epochs run, the best validation value of the primary metric and when."""

    epochs_run: int
    best_epoch: int
    best_metric: float
    stopped_early: bool
    history: list[dict[str, Any]] = field(default_factory=list)


def make_loader(dataset: Dataset, cfg: RunConfig, domain: Domain, modalities: Sequence[str], runtime: Runtime, train: bool, split: str) -> DataLoader:
    """A DataLoader of collated `Batch`es; distributed or seeded-random sampling for training."""
    collate = functools.partial(collate_samples, modality_to_layout={m: domain.modality(m).layout for m in modalities})
    common = dict(collate_fn=collate, num_workers=cfg.data.num_workers, pin_memory=runtime.device.type == "cuda", persistent_workers=cfg.data.num_workers > 0)
    if domain.batch_sampler is not None:
        batch_sampler = resolve(domain.batch_sampler)(dataset, cfg, split)
        if batch_sampler is not None:
            return DataLoader(dataset, batch_sampler=batch_sampler, **common)
    if runtime.distributed:
        sampler = DistributedSampler(dataset, num_replicas=runtime.world_size, rank=runtime.rank, shuffle=train, seed=cfg.seed)
    elif train:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(cfg.seed))
    else:
        sampler = None
    return DataLoader(dataset, batch_size=cfg.train.batch_size, sampler=sampler, drop_last=False, **common)


def compute_metrics(domain: Domain, records: dict[str, list[PredictionRecord]], cfg: RunConfig, val_records: dict[str, list[PredictionRecord]] | None = None) -> dict[str, float]:
    """Each task's dataset-level metrics, keys prefixed by the task name when a domain has several tasks."""
    metrics: dict[str, float] = {}
    for task in domain.tasks:
        if task.name not in records:
            continue
        fn = resolve(task.metrics)
        kwargs = {"val_records": (val_records or {}).get(task.name)} if "val_records" in inspect.signature(fn).parameters else {}
        values = fn(records[task.name], cfg, **kwargs)
        prefix = f"{task.name}/" if len(domain.tasks) > 1 else ""
        metrics.update({f"{prefix}{k}": v for k, v in values.items()})
    return metrics


def primary_key(domain: Domain) -> str:
    task = domain.primary_task
    return f"{task.name}/{task.primary_metric}" if len(domain.tasks) > 1 else task.primary_metric


def build_loss(ref: Any, cfg: RunConfig, train_set: Any) -> Any:
    """Resolve a `TaskSpec.losses` reference: a function is used as is; a class is built once per
    run as ``cls(cfg, train_set)`` (losses that depend on the training data, such as pos_weight)."""
    loss = resolve(ref)
    return loss(cfg, train_set) if inspect.isclass(loss) else loss


class Trainer:
    """Fits a model on a domain's train split, selecting on the validation primary metric.

    Args:
        cfg: the resolved run config.
        domain: the domain (tasks, losses, metrics).
        model: the model (wrapped in DDP here when distributed).
        train_set, val_set: datasets of `Sample`s.
        run_dir: the run directory (checkpoints/ and logs/ are written in it, main process only).
        runtime: device, precision and distributed coordinates.
        modalities: modalities the model uses (collated).
        callbacks: hooks (see `mmapps.train.callbacks`).
    """

    def __init__(self, cfg: RunConfig, domain: Domain, model: nn.Module, train_set: Dataset, val_set: Dataset, run_dir: Path, runtime: Runtime, modalities: Sequence[str], callbacks: Sequence[Callback] = ()) -> None:
        self.cfg, self.domain, self.runtime, self.run_dir = cfg, domain, runtime, Path(run_dir)
        self.model = model.to(runtime.device)
        if runtime.distributed:
            device_ids = [runtime.local_rank] if runtime.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids, find_unused_parameters=cfg.train.find_unused_parameters)
        self.train_loader = make_loader(train_set, cfg, domain, modalities, runtime, train=True, split="train")
        self.val_loader = make_loader(val_set, cfg, domain, modalities, runtime, train=False, split="val") if len(val_set) else None
        self.callbacks = list(callbacks)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
        self.losses = {t.name: [(name, build_loss(ref, cfg, train_set), weight) for name, (ref, weight) in t.losses.items()] for t in domain.tasks}
        steps_per_epoch = len(self.train_loader) if cfg.train.max_steps_per_epoch is None else min(len(self.train_loader), cfg.train.max_steps_per_epoch)
        self.optimizer_steps_per_epoch = max(1, math.ceil(steps_per_epoch / cfg.train.grad_accum_steps))
        self.total_steps = self.optimizer_steps_per_epoch * cfg.train.epochs
        self.global_step = 0
        self.checkpoint_dir = self.run_dir / "checkpoints"
        self.labels = {t.name: list(t.labels) for t in domain.tasks}
        self.primary = primary_key(domain)
        self.higher_is_better = domain.primary_task.higher_is_better

    # -- losses -------------------------------------------------------------------------------
    def compute_loss(self, outputs: dict[str, Any], batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        total = torch.zeros((), device=self.runtime.device)
        parts: dict[str, float] = {}
        for task, losses in self.losses.items():
            if task not in batch.targets:
                continue
            for name, fn, weight in losses:
                value = fn(outputs[task], batch.targets[task], batch)
                parts[f"loss/{task}/{name}"] = float(value.detach())
                total = total + weight * value.float()
        return total, parts

    # -- the loop -----------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> FitResult:
        train_cfg = self.cfg.train
        logger = EpochLogger(self.run_dir / "logs", tensorboard=train_cfg.tensorboard) if self.runtime.is_main else None
        start_epoch, best, best_epoch, bad_epochs, history = 0, math.nan, -1, 0, []
        if resume:
            state = ckpt.load_training_state(self.checkpoint_dir / "last.pt")
            ckpt.load_weights(self.model, state["model"], self.checkpoint_dir / "last.pt")
            self.optimizer.load_state_dict(state["optimizer"])
            self.global_step = int(state["global_step"])
            start_epoch = int(state["epoch"]) + 1
            best, best_epoch, bad_epochs = float(state["best_metric"]), int(state["best_epoch"]), int(state["bad_epochs"])
            torch.set_rng_state(state["rng_cpu"])
            if torch.cuda.is_available() and "rng_cuda" in state:
                torch.cuda.set_rng_state_all(list(state["rng_cuda"]))
            if logger:
                logger.truncate_after(start_epoch - 1)
        for cb in self.callbacks:
            cb.on_fit_start(self)
        stopped_early = False
        epoch = start_epoch - 1
        for epoch in range(start_epoch, train_cfg.epochs):
            started = time.perf_counter()
            train_loss = self._train_epoch(epoch)
            row: dict[str, Any] = {"train/loss": train_loss, "lr": self.optimizer.param_groups[0]["lr"]}
            value = math.nan
            if self.val_loader is not None:
                val_records = predict_records(self.model, self.val_loader, self.domain, self.runtime)
                quick = self.cfg.model_copy(update={"eval": self.cfg.eval.model_copy(update={"bootstrap_resamples": 0})})
                val_metrics = compute_metrics(self.domain, val_records, quick) if self.runtime.is_main else {}
                value = self._broadcast(float(val_metrics.get(self.primary, math.nan)))
                row.update({f"val/{k}": v for k, v in val_metrics.items() if isinstance(v, (int, float))})
            improved = self._improved(value, best) or (self.val_loader is None)
            if improved:
                best, best_epoch, bad_epochs = value, epoch, 0
                if self.runtime.is_main:
                    self.save_inference(self.checkpoint_dir / "best.safetensors", epoch)
            else:
                bad_epochs += 1
            last_epoch = epoch == train_cfg.epochs - 1 or (train_cfg.patience is not None and bad_epochs >= train_cfg.patience)
            if self.runtime.is_main and ((epoch + 1) % train_cfg.checkpoint_every == 0 or last_epoch):
                self._save_state(epoch, best, best_epoch, bad_epochs)
            row["seconds"] = time.perf_counter() - started
            history.append({"epoch": epoch, **row})
            if logger:
                logger.log(epoch, row)
                self._print_epoch(epoch, row, value)
            self._barrier()
            for cb in self.callbacks:
                cb.on_epoch_end(self, epoch, row)
            if train_cfg.patience is not None and bad_epochs >= train_cfg.patience:
                stopped_early = True
                break
        if logger:
            logger.close()
        for cb in self.callbacks:
            cb.on_fit_end(self)
        return FitResult(epoch + 1, best_epoch, best, stopped_early, history)

    def _train_epoch(self, epoch: int) -> float:
        train_cfg = self.cfg.train
        self.model.train()
        sampler = self.train_loader.sampler
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)
        elif isinstance(sampler, RandomSampler) and sampler.generator is not None:
            sampler.generator.manual_seed(self.cfg.seed * 100003 + epoch)
        limit = len(self.train_loader) if train_cfg.max_steps_per_epoch is None else min(len(self.train_loader), train_cfg.max_steps_per_epoch)
        accum = train_cfg.grad_accum_steps
        total, count = 0.0, 0
        warmup = int(train_cfg.warmup_fraction * self.total_steps)
        progress = self._progress(limit, epoch)
        for step, batch in enumerate(self.train_loader):
            if step >= limit:
                break
            batch = batch.to(self.runtime.device)
            sync = (step + 1) % accum == 0 or step + 1 == limit
            with maybe_no_sync(self.model, not sync):
                with self.runtime.autocast():
                    outputs = self.model(batch)
                    loss, _ = self.compute_loss(outputs, batch)
                (loss / accum).backward()
            if sync:
                if train_cfg.grad_clip is not None:
                    nn.utils.clip_grad_norm_(self.model.parameters(), train_cfg.grad_clip)
                scale = warmup_cosine(self.global_step, self.total_steps, warmup)
                for group in self.optimizer.param_groups:
                    group["lr"] = train_cfg.lr * scale
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.global_step += 1
            total += float(loss.detach())
            count += 1
            if progress:
                progress[0].update(progress[1], advance=1, description=f"epoch {epoch + 1}/{train_cfg.epochs} loss {total / count:.4f}")
            for cb in self.callbacks:
                cb.on_train_batch_end(self, float(loss.detach()))
        if progress:
            progress[0].stop()
        return total / max(count, 1)

    # -- helpers ------------------------------------------------------------------------------
    def _improved(self, value: float, best: float) -> bool:
        if math.isnan(value):
            return math.isnan(best)
        if math.isnan(best):
            return True
        return value > best if self.higher_is_better else value < best

    def save_inference(self, path: Path, epoch: int) -> None:
        ckpt.save_inference_checkpoint(path, self.model, config_to_yaml(self.cfg), self.labels, {"epoch": epoch})

    def _save_state(self, epoch: int, best: float, best_epoch: int, bad_epochs: int) -> None:
        state = {
            "format": ckpt.FORMAT,
            "model": ckpt.unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": epoch,
            "global_step": self.global_step,
            "best_metric": best,
            "best_epoch": best_epoch,
            "bad_epochs": bad_epochs,
            "rng_cpu": torch.get_rng_state(),
            "config": config_to_yaml(self.cfg),
        }
        if torch.cuda.is_available():
            state["rng_cuda"] = torch.cuda.get_rng_state_all()
        ckpt.save_training_state(self.checkpoint_dir / "last.pt", state)
        self.save_inference(self.checkpoint_dir / "last.safetensors", epoch)

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

    def _progress(self, total: int, epoch: int) -> tuple[Any, Any] | None:
        if not (self.cfg.train.progress and self.runtime.is_main and sys.stderr.isatty()):
            return None
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"), TimeRemainingColumn(), transient=True)
        progress.start()
        return progress, progress.add_task(f"epoch {epoch + 1}", total=total)

    def _print_epoch(self, epoch: int, row: dict[str, Any], value: float) -> None:
        if not self.cfg.train.progress:
            return
        print(f"epoch {epoch + 1}/{self.cfg.train.epochs}: train loss {row['train/loss']:.4f}, val {self.primary} {value:.4f} ({row.get('seconds', 0):.1f} s)", file=sys.stderr, flush=True)
