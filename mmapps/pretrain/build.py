"""Assemble the `PretrainModel` of a domain's model: the hook, the encoders' declarations, the core kinds."""

from __future__ import annotations

from typing import Any

from torch import nn

from mmapps.domain import Domain, resolve
from mmapps.errors import ConfigError
from mmapps.pretrain.contract import PretrainParts
from mmapps.pretrain.kinds import objective_for
from mmapps.pretrain.model import PretrainModel


def check_pretrain_config(cfg: Any, domain: Domain, modalities: list[str]) -> None:
    """Refuse modality names in ``pretrain.loss_weights`` / ``pretrain.mask_ratio`` that this run does not have."""
    for field in ("loss_weights", "mask_ratio"):
        unknown = sorted(set(getattr(cfg.pretrain, field)) - set(modalities))
        if unknown:
            raise ConfigError(
                f"pretrain.{field}: {unknown} {'is not a modality' if len(unknown) == 1 else 'are not modalities'} of this {domain.name} run; "
                f"its modalities are {modalities} (e.g. --set pretrain.{field}.{modalities[0]}=0.5)"
            )


def _gives_tokens(fusion: nn.Module | None) -> bool:
    from mmapps.models.fusions.attention import AttentionFusion

    return isinstance(fusion, AttentionFusion) and not fusion.per_timestep


def build_pretrain_model(cfg: Any, domain: Domain, backbone: nn.Module, modalities: list[str]) -> tuple[PretrainModel, tuple[str, ...]]:
    """The pretraining model around `backbone`, and the names of the submodules ``train --init`` receives.

    Raises:
        ConfigError: a custom model without a hook, a modality with no objective, or bad pretrain options.
    """
    check_pretrain_config(cfg, domain, modalities)
    parts = resolve(domain.pretrain)(cfg, domain, backbone) if domain.pretrain is not None else PretrainParts()
    if not isinstance(parts, PretrainParts):
        raise ConfigError(f"domain {domain.name!r}: Domain.pretrain returned {type(parts).__name__}, expected mmapps.pretrain.contract.PretrainParts (docs/pretraining.md#the-plugin-hook)")
    encoders = parts.encoders if parts.encoders is not None else getattr(backbone, "encoders", None)
    if encoders is None:
        raise ConfigError(
            f"pretrain: the {domain.name} model ({type(backbone).__name__}, from Domain.build_model) has no `encoders`; its Domain.pretrain hook "
            "must say how its encoders are reached (PretrainParts(encoders=...), docs/pretraining.md#the-plugin-hook)"
        )
    names = [m for m in modalities if m in encoders]
    fusion = parts.fusion if parts.fusion is not None else getattr(backbone, "fusion", None)
    aux = None
    if parts.fusion is None and not _gives_tokens(fusion):  # e.g. concat or late fusion: a token fusion only for pretraining
        from mmapps.models.fusions.attention import AttentionFusion

        aux = fusion = AttentionFusion({m: encoders[m].out_dim for m in names}, cfg.model.dim, layers=2, heads=4 if cfg.model.dim % 4 == 0 else 1)
    context_dim = int(getattr(fusion, "out_dim", cfg.model.dim))
    objectives = {}
    for m in names:
        objectives[m] = parts.objectives[m] if m in parts.objectives else objective_for(m, encoders[m], domain.modality(m), cfg, context_dim, tuple(sorted(names)))
    model = PretrainModel(backbone, {m: encoders[m] for m in names}, fusion, aux, objectives, cfg, domain.removable_modalities)
    return model, parts.transferred if parts.transferred is not None else _submodule_names(backbone, [encoders[m] for m in names] + ([] if aux is not None else [fusion]))


def _submodule_names(backbone: nn.Module, modules: list[nn.Module]) -> tuple[str, ...]:
    by_id = {id(module): name for name, module in backbone.named_modules() if name}
    return tuple(sorted(by_id[id(m)] for m in modules if id(m) in by_id))
