"""Assemble a model from the run config and the domain's declarations."""

from __future__ import annotations

import copy

from torch import nn

from mmapps.config import RunConfig
from mmapps.domain import Domain, resolve
from mmapps.errors import ConfigError
from mmapps.registry import ENCODERS, FUSIONS, HEADS


def register_core_parts() -> None:
    """Import the core encoders, fusions and heads so that they are registered."""
    import mmapps.models.encoders  # noqa: F401
    import mmapps.models.fusions  # noqa: F401
    import mmapps.models.heads  # noqa: F401


def selected_modalities(cfg: RunConfig, domain: Domain) -> list[str]:
    """The modalities this run uses (all of the domain's, or the baseline subset in ``model.modalities``)."""
    names = cfg.model.modalities or list(domain.modality_names)
    unknown = [m for m in names if m not in domain.modality_names]
    if unknown:
        raise ConfigError(f"model.modalities: {unknown} not in domain {domain.name!r}; it has {list(domain.modality_names)}")
    return sorted(names)


def build_model(cfg: RunConfig, domain: Domain) -> nn.Module:
    """The domain's own model builder if it declares one, else the core `FusionModel`."""
    register_core_parts()
    if domain.setup is not None:
        resolve(domain.setup)()
    model = resolve(domain.build_model)(cfg, domain) if domain.build_model is not None else build_fusion_model(cfg, domain)
    if cfg.model.pruned is not None:  # a pruned checkpoint's architecture (mmapps.prune.structure)
        from mmapps.prune.structure import apply_structure

        apply_structure(model, cfg.model.pruned)
    return model


def build_fusion_model(cfg: RunConfig, domain: Domain) -> nn.Module:
    """encoders (``model.encoders``) -> fusion (``model.fusion``) -> heads (one per task)."""
    from mmapps.models.fusion_model import FusionModel

    modalities = selected_modalities(cfg, domain)
    encoders = nn.ModuleDict()
    for m in modalities:
        if m not in cfg.model.encoders:
            raise ConfigError(f"model.encoders.{m}: no encoder configured for modality {m!r}; registered encoders: {', '.join(ENCODERS.list())}")
        spec = cfg.model.encoders[m]
        encoders[m] = _construct(ENCODERS.get(spec.name), f"model.encoders.{m}", dim=cfg.model.dim, **spec.options)
    fusion_cfg = cfg.model.fusion
    fusion_cls = FUSIONS.get(fusion_cfg.name)
    options = dict(fusion_cfg.options)
    if fusion_cfg.per_timestep and fusion_cfg.name == "attention":
        options["per_timestep"] = True
    fusion = _construct(fusion_cls, "model.fusion", modality_to_dim={m: encoders[m].out_dim for m in modalities}, dim=cfg.model.dim, **options)
    heads = nn.ModuleDict()
    prediction_level = getattr(fusion, "level", "features") == "predictions"
    for task in domain.tasks:
        head_cfg = cfg.model.heads.get(task.name)
        head_cls = HEADS.get(head_cfg.name if head_cfg and head_cfg.name else task.head)
        head_options = head_cfg.options if head_cfg else {}
        if prediction_level:
            heads[task.name] = nn.ModuleDict(
                {m: _construct(head_cls, f"model.heads.{task.name}", in_dim=encoders[m].out_dim, num_labels=len(task.labels), **copy.deepcopy(head_options)) for m in modalities}
            )
        else:
            heads[task.name] = _construct(head_cls, f"model.heads.{task.name}", in_dim=fusion.out_dim, num_labels=len(task.labels), **head_options)
    return FusionModel(encoders, fusion, heads, per_timestep=fusion_cfg.per_timestep, modality_dropout=fusion_cfg.modality_dropout)


def _construct(cls: type, where: str, **kwargs: object) -> nn.Module:
    from mmapps.registry import CORE_SUPPLIED, check_options

    check_options(cls, kwargs, where, supplied=CORE_SUPPLIED)
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"{where}: {cls.__name__} rejected its options ({err})") from None
