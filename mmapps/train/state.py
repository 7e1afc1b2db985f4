"""The resumable training state (``checkpoints/resume.safetensors``): what the loop needs to continue bit-exactly.

Model and optimiser state, the schedule position (the learning rate is a pure function of the
optimiser step, `mmapps.train.schedule`), the sampler position (next epoch and next batch: the
shuffling is a pure function of (seed, epoch), `mmapps.train.sampling`), the running loss of a
partial epoch, early-stopping state, best metric and epoch, the per-epoch history, and the torch
RNG states (CPU and CUDA). Augmentation randomness needs no state: it is derived from
(seed, epoch, sample index) (`mmapps.data.rng`). Only tensors and plain values, so it is stored
without pickle: tensors in safetensors, the rest as JSON (`mmapps.train.state_io`). There is no GradScaler (bf16 autocast needs no loss scaling)
and no weight EMA in this trainer; a component that adds either saves its ``state_dict`` here.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from mmapps.errors import CheckpointError


@dataclass
class Progress:
    """Where the loop stands: the next (epoch, batch) to train, and the selection state."""

    next_epoch: int = 0
    next_batch: int = 0
    best_metric: float = math.nan
    best_epoch: int = -1
    bad_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch_loss_sum: torch.Tensor | None = None  # partial epoch: running sum of batch losses (device tensor)
    epoch_loss_count: int = 0


def pack_state(model_state: dict, optimizer_state: dict, global_step: int, progress: Progress, schedule: dict[str, int], config_yaml: str, format_name: str) -> dict[str, Any]:
    """The resumable state as one dictionary of tensors and plain values (`mmapps.train.state_io` stores it)."""
    state: dict[str, Any] = {
        "format": format_name,
        "model": model_state,
        "optimizer": optimizer_state,
        "epoch": progress.next_epoch - 1,  # the last completed epoch (older readers)
        "next_epoch": progress.next_epoch,
        "next_batch": progress.next_batch,
        "global_step": global_step,
        "schedule": dict(schedule),
        "best_metric": progress.best_metric,
        "best_epoch": progress.best_epoch,
        "bad_epochs": progress.bad_epochs,
        "history": json.dumps(progress.history),  # one JSON text: the rows' keys and values come back exactly as logged
        "epoch_loss_sum": (progress.epoch_loss_sum.detach().cpu() if progress.epoch_loss_sum is not None else torch.zeros(())),
        "epoch_loss_count": progress.epoch_loss_count,
        "rng_cpu": torch.get_rng_state(),
        "config": config_yaml,
    }
    if torch.cuda.is_available():
        state["rng_cuda"] = torch.cuda.get_rng_state_all()
    return state


def unpack_progress(state: dict[str, Any], schedule: dict[str, int], source: Any, device: torch.device) -> Progress:
    """The `Progress` of a loaded training state (one without a batch position resumes at the next epoch)."""
    saved = state.get("schedule")
    if saved is not None and dict(saved) != dict(schedule):
        raise CheckpointError(f"checkpoint {source}: written for the schedule {dict(saved)}, but this run's config gives {dict(schedule)}; resume with the run's own config.yaml unchanged")
    next_epoch = int(state["next_epoch"]) if "next_epoch" in state else int(state["epoch"]) + 1
    loss_sum = state.get("epoch_loss_sum")
    return Progress(
        next_epoch=next_epoch,
        next_batch=int(state.get("next_batch", 0)),
        best_metric=float(state["best_metric"]),
        best_epoch=int(state["best_epoch"]),
        bad_epochs=int(state["bad_epochs"]),
        history=json.loads(state["history"]) if "history" in state else [],
        epoch_loss_sum=loss_sum.to(device) if isinstance(loss_sum, torch.Tensor) else None,
        epoch_loss_count=int(state.get("epoch_loss_count", 0)),
    )


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["rng_cpu"])
    if torch.cuda.is_available() and "rng_cuda" in state:
        torch.cuda.set_rng_state_all(list(state["rng_cuda"]))
