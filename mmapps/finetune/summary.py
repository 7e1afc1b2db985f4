"""Trainable vs total parameters, per part and for the whole model (reports, ``info``)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from mmapps.finetune.parts import find_parts


@dataclass(frozen=True)
class ParameterCount:
    trainable: int
    total: int

    def format(self) -> str:
        share = 100.0 * self.trainable / self.total if self.total else 0.0
        return f"{self.trainable:,} of {self.total:,} trainable ({share:.2f} %)"


def count_parameters(module: nn.Module) -> ParameterCount:
    params = list(module.parameters())
    return ParameterCount(sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params))


def parameter_summary(model: nn.Module) -> dict[str, ParameterCount]:
    """``{"model": ..., "<part>": ..., "heads": ...}`` (adapter parameters counted in their part)."""
    found = find_parts(model)
    rows = {"model": count_parameters(model)}
    rows.update({name: count_parameters(module) for name, (_, module) in found.parts.items()})
    rows.update({name: count_parameters(module) for name, (_, module) in found.heads.items()})
    return rows


def format_summary(rows: dict[str, ParameterCount]) -> str:
    """One line per row: ``name: T of N trainable (p %)``."""
    width = max(len(name) for name in rows)
    return "\n".join(f"{name:<{width}}  {count.format()}" for name, count in rows.items())


def parameter_info(rows: dict[str, ParameterCount], plan: object | None = None) -> dict[str, str]:
    """Report lines: trainable vs total for the model and per part, and each part's fine-tuning mode."""
    modes = getattr(plan, "modes", {}) or {}
    parts = "; ".join(f"{name} {count.trainable:,}/{count.total:,}" + (f" ({modes[name]})" if name in modes else "") for name, count in rows.items() if name != "model")
    return {"trainable parameters": rows["model"].format(), "trainable / total per part": parts}
