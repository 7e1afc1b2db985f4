"""Apply the fine-tuning mode of every part (``finetune.parts``) to a built model, in place.

Modes per part (an encoder by modality name, or ``fusion``):

- ``as_built`` (default): what the part's own options say (e.g. the text encoder's ``finetune``).
- ``full``: every parameter trained.
- ``frozen``: no parameter trained, and the part always runs in eval mode, so BatchNorm running
  statistics stay as loaded and dropout is off (a fixed feature extractor).
- ``last_n``: the last N layers of the part's layer stack (`parts.layer_units`) and the modules
  after it are trained; the rest is frozen, its BatchNorm statistics too.
- ``lora``/``ia3``: the part's weights are frozen (BatchNorm statistics too) and ``peft`` adapters
  are trained (`adapters.inject_adapters`).

Heads are always trained (they are the ``modules_to_save``: saved with the adapters).
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field

from torch import nn

from mmapps.config import FinetuneConfig
from mmapps.errors import ConfigError
from mmapps.finetune.adapters import inject_adapters
from mmapps.finetune.parts import find_parts, layer_units

_BATCH_NORMS = nn.modules.batchnorm._BatchNorm


@dataclass
class FinetunePlan:
    """What `apply_finetune` did: the mode of each part and the modules given adapters."""

    modes: dict[str, str] = field(default_factory=dict)
    adapted: dict[str, list[str]] = field(default_factory=dict)

    @property
    def uses_adapters(self) -> bool:
        return any(self.adapted.values())


def apply_finetune(model: nn.Module, cfg: FinetuneConfig) -> FinetunePlan:
    """Set trainable parameters, frozen norms and adapters per ``cfg.parts``; heads stay trainable.

    Raises:
        ConfigError: a part name the model does not have, ``last_n`` beyond the part's layers, or
            adapter targets the part does not have.
    """
    if not cfg.parts:
        return FinetunePlan()  # the model as built (and any model the trainer fits, pretraining's included)
    found = find_parts(model)
    unknown = [name for name in cfg.parts if name not in found.parts]
    if unknown:
        heads = " (heads are always trained and take no mode)" if any(n in ("head", "heads") for n in unknown) else ""
        raise ConfigError(f"finetune.parts: {unknown} not parts of this model{heads}; its parts are {', '.join(found.parts)}; "
                          "modes are as_built, full, frozen, last_n, lora, ia3")
    plan = FinetunePlan()
    for name, part_cfg in cfg.parts.items():
        _, part = found.parts[name]
        plan.modes[name] = part_cfg.mode
        if part_cfg.mode == "as_built":
            continue
        _uses_live_outputs(part, frozen=part_cfg.mode == "frozen")
        if part_cfg.mode == "full":
            part.requires_grad_(True)
        elif part_cfg.mode == "frozen":
            part.requires_grad_(False)
            lock_eval(part)
        elif part_cfg.mode == "last_n":
            _last_n(name, part, part_cfg.last_n)
        else:
            part.requires_grad_(False)
            lock_norm_statistics(part)
            plan.adapted[name] = inject_adapters(name, part, part_cfg)
    for _, head in found.heads.values():
        head.requires_grad_(True)
    return plan


def _last_n(name: str, part: nn.Module, n: int) -> None:
    layers, after = layer_units(part)
    if n > len(layers):
        raise ConfigError(f"finetune.parts.{name}.last_n={n}: part {name!r} has {len(layers)} layer(s) in its stack; give 1..{len(layers)}, or mode full")
    part.requires_grad_(False)
    for unit in layers[:-n]:
        for module in unit:
            lock_norm_statistics(module)
    for unit in layers[-n:]:
        for module in unit:
            module.requires_grad_(True)
    for module in after:
        for p in module.parameters(recurse=False):
            p.requires_grad_(True)


def lock_eval(module: nn.Module) -> None:
    """Keep `module` (and everything in it) in eval mode whatever ``train()`` is called with."""
    module.train = types.MethodType(_always_eval, module)  # type: ignore[method-assign]
    module.eval()


def lock_norm_statistics(module: nn.Module) -> None:
    """Keep every BatchNorm in `module` in eval mode: running statistics neither used from the batch nor updated."""
    for m in module.modules():
        if isinstance(m, _BATCH_NORMS):
            lock_eval(m)


def _always_eval(self: nn.Module, mode: bool = True) -> nn.Module:
    return nn.Module.train(self, False)


def _uses_live_outputs(part: nn.Module, frozen: bool) -> None:
    """A text encoder built frozen caches its outputs per text; any mode that trains it must not read that cache."""
    if frozen or getattr(part, "finetune", None) != "frozen" or not hasattr(part, "_cache_size"):
        return
    part.finetune = "adapted"  # computed per batch with gradients, backbone dropout as in training
    part._cache_size = 0
    part._cache.clear()
