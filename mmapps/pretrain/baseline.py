"""The trivial predictor (per-position mean of the targets) and held-out evaluation of a `PretrainModel`.

The per-position mean predictor guesses, for every mask unit position, the mean target seen at
that position on the pool (cross-entropy targets: the pool's unigram distribution). A
reconstruction that does not beat it on held-out data learned nothing about the sample; its loss
also normalises L_m when ``pretrain.normalize_by_trivial`` is set.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence

import torch
from torch import Tensor

from mmapps.data.sample import Batch
from mmapps.pretrain.contract import ModalityTarget
from mmapps.pretrain.model import PretrainModel

EVAL_EPOCH = -1  # the mask key of held-out evaluation: the same masks at every epoch


class PositionMean:
    """Accumulates targets per unit position; `prediction` gives the mean (global mean where a position was never seen)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.sum: Tensor | None = None
        self.count: Tensor | None = None

    def add(self, target: ModalityTarget, width: int) -> None:
        w = target.weight.detach().float().cpu()  # (B, U)
        if self.kind == "ce":
            ids = target.values.detach().cpu().flatten().long()
            counts = torch.bincount(ids, weights=w.flatten(), minlength=width)[:width].view(1, width)
            self.sum = counts if self.sum is None else self.sum + counts
            self.count = torch.ones(1) if self.count is None else self.count
            return
        values = target.values.detach().float().cpu()  # (B, U, P)
        sums, counts = (values * w.unsqueeze(-1)).sum(0), w.sum(0)  # (U, P), (U,)
        if self.sum is None:
            self.sum, self.count = sums, counts
            return
        U = max(self.sum.shape[0], sums.shape[0])
        pad = lambda t: torch.nn.functional.pad(t, (0, 0, 0, U - t.shape[0])) if t.dim() == 2 else torch.nn.functional.pad(t, (0, U - t.shape[0]))
        self.sum, self.count = pad(self.sum) + pad(sums), pad(self.count) + pad(counts)

    def prediction(self, units: int, width: int) -> Tensor:
        """(units, width) predictions (log-probabilities for cross-entropy targets)."""
        if self.sum is None:
            return torch.zeros(units, width)
        if self.kind == "ce":
            probs = (self.sum[0] + 1e-3) / (self.sum[0] + 1e-3).sum()
            return probs.log().expand(units, -1)
        overall = self.sum.sum(0) / self.count.sum().clamp_min(1.0)  # (P,)
        mean = self.sum / self.count.clamp_min(1e-9).unsqueeze(-1)
        mean = torch.where((self.count > 0).unsqueeze(-1), mean, overall)
        if mean.shape[0] < units:
            mean = torch.cat([mean, overall.expand(units - mean.shape[0], -1)])
        return mean[:units]


@contextlib.contextmanager
def evaluating(model: PretrainModel, epoch: int = EVAL_EPOCH) -> Iterator[None]:
    """Eval mode, no gradients and fixed masks; the model's mode and epoch are restored after."""
    was_training, previous = model.training, model.epoch
    model.eval()
    model.epoch = epoch
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)
        model.epoch = previous


def _count(target: ModalityTarget) -> float:
    return float(target.weight.sum())


def fit_statistics(model: PretrainModel, batches: Sequence[Batch]) -> dict[str, PositionMean]:
    """Before training: the objectives' target statistics, the position means and the pool's trivial losses (saved in ``model.trivial``)."""
    for m, objective in model.objectives.items():
        if hasattr(objective, "fit_statistics"):
            objective.fit_statistics([b.inputs[m] for b in batches if m in b.inputs])
    means = {m: PositionMean(model.objectives[m].loss_kind) for m in model.modalities}
    with evaluating(model, epoch=0):
        steps = [(batch, model(batch)) for batch in batches]
        for _, step in steps:
            for m, target in step.targets.items():
                means[m].add(target, step.predictions[m].shape[-1])
        trivial = trivial_losses(model, [s for _, s in steps], means)
    for i, m in enumerate(model.modalities):
        model.trivial[i] = max(trivial.get(m, 1.0), 1e-6)
        fit_prior(model.objectives[m], means[m])
    return means


def fit_prior(objective: torch.nn.Module, mean: PositionMean) -> None:
    """Every `PositionPrior` of `objective` (its decoder's, or its own) predicts the pool's per-position mean target (MSE targets)."""
    from mmapps.pretrain.decoder import PositionPrior

    if mean.kind != "mse" or mean.sum is None:
        return
    for prior in (module for module in objective.modules() if isinstance(module, PositionPrior)):
        if mean.sum.shape[-1] == prior.width:
            units = mean.sum.shape[0]
            prior.fit(mean.prediction(units, prior.width), mean.sum.sum(0) / mean.count.sum().clamp_min(1.0))


def trivial_losses(model: PretrainModel, steps: Iterable, means: dict[str, PositionMean]) -> dict[str, float]:
    """Unit-weighted loss of the position-mean predictor over forward results `steps`."""
    totals: dict[str, list[float]] = {}
    for step in steps:
        for m, target in step.targets.items():
            U, P = step.predictions[m].shape[1:]
            guess = means[m].prediction(U, P).to(step.predictions[m].device).expand(target.values.shape[0], -1, -1)
            n = _count(target)
            value = float(model.objectives[m].loss(guess, target)) * n
            acc = totals.setdefault(m, [0.0, 0.0])
            acc[0], acc[1] = acc[0] + value, acc[1] + n
    return {m: v / n for m, (v, n) in totals.items() if n > 0}


def evaluate(model: PretrainModel, batches: Iterable[Batch], device: torch.device, means: dict[str, PositionMean] | None = None, hide_others: bool = False) -> dict[str, float]:
    """Held-out losses per modality (``loss/<m>``), their weighted sum (``recon``), the trivial predictor's (``trivial/<m>``),
    and with `hide_others` each modality's loss when every other modality is hidden (``loss/<m>/others_hidden``)."""
    sums: dict[str, list[float]] = {}
    steps = []
    with evaluating(model):
        for batch in batches:
            batch = batch.to(device)
            step = model(batch)
            if means is not None:
                steps.append(step)
            for m, target in step.targets.items():
                n = _count(target)
                acc = sums.setdefault(f"loss/{m}", [0.0, 0.0])
                acc[0], acc[1] = acc[0] + float(step.losses[m]) * n, acc[1] + n
            if hide_others:
                for m in step.targets:
                    alone = model(batch, hide=[o for o in model.modalities if o != m])
                    target = alone.targets[m]
                    n = _count(target)
                    acc = sums.setdefault(f"loss/{m}/others_hidden", [0.0, 0.0])
                    acc[0], acc[1] = acc[0] + float(alone.losses[m]) * n, acc[1] + n
            if means is not None and len(steps) > 64:  # keep memory bounded on large held-out sets
                _merge(sums, trivial_losses(model, steps, means), steps)
                steps = []
        if means is not None and steps:
            _merge(sums, trivial_losses(model, steps, means), steps)
    values = {k: s / n for k, (s, n) in sums.items() if n > 0}
    recon = 0.0
    for i, m in enumerate(model.modalities):
        if f"loss/{m}" in values and model.weights[m] > 0:
            scale = 1.0 / float(model.trivial[i]) if model.options.normalize_by_trivial else 1.0
            recon += model.weights[m] * scale * values[f"loss/{m}"]
    values["recon"] = recon
    return values


def _merge(sums: dict[str, list[float]], trivial: dict[str, float], steps: list) -> None:
    for m, value in trivial.items():
        n = sum(_count(s.targets[m]) for s in steps if m in s.targets)
        acc = sums.setdefault(f"trivial/{m}", [0.0, 0.0])
        acc[0], acc[1] = acc[0] + value * n, acc[1] + n
