"""Trainer callbacks: hooks called at fixed points of the loop (Lightning-style, minimal)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mmapps.train.trainer import Trainer


class Callback:
    """Override the hooks you need; every hook receives the trainer."""

    def on_fit_start(self, trainer: "Trainer") -> None: ...

    def on_train_batch_end(self, trainer: "Trainer", loss: float) -> None: ...

    def on_epoch_end(self, trainer: "Trainer", epoch: int, metrics: dict[str, Any]) -> None: ...

    def on_fit_end(self, trainer: "Trainer") -> None: ...


class StopAfterEpoch(Callback):
    """Raise KeyboardInterrupt after the checkpoint of `epoch` (0-based) is written: simulates a killed run."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, trainer: "Trainer", epoch: int, metrics: dict[str, Any]) -> None:
        if epoch == self.epoch:
            raise KeyboardInterrupt(f"stopped after epoch {epoch}")
