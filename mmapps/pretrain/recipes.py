"""The core pretraining recipes, merged over each domain's recipe of the same name.

Order (later wins): core defaults <- the domain's recipe (data, model) <- the core pretraining
recipe (schedule, pretrain options) <- the domain recipe's ``pretrain.train`` (a domain's own
pretraining schedule) <- the config file <- ``--set`` <- CLI options.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from mmapps.config import RunConfig, deep_merge
from mmapps.domain import Domain
from mmapps.errors import ConfigError

# Masked autoencoders need many more epochs than supervised training (MAE: 400-1600 on ImageNet);
# CPU recipes stay within minutes and stop early on the held-out reconstruction loss.
PRETRAIN_RECIPES: dict[str, dict[str, Any]] = {
    "smoke": {"train": {"epochs": 2, "patience": None, "warmup_fraction": 0.0, "find_unused_parameters": True}, "pretrain": {"statistics_batches": 2, "report_samples": 2}},
    "quick": {"train": {"epochs": 15, "lr": 1e-3, "weight_decay": 0.05, "patience": 5, "warmup_fraction": 0.1, "find_unused_parameters": True}},
    "default": {"train": {"epochs": 40, "lr": 1e-3, "weight_decay": 0.05, "patience": 8, "warmup_fraction": 0.1, "find_unused_parameters": True}},
    "gpu": {"train": {"epochs": 200, "lr": 1.5e-4, "weight_decay": 0.05, "patience": 20, "warmup_fraction": 0.05, "device": "cuda", "find_unused_parameters": True}},
}


def pretrain_recipe(domain: Domain, name: str) -> dict[str, Any]:
    """The domain's recipe `name` with the core pretraining recipe and the domain's ``pretrain.train`` over it."""
    if name not in domain.recipes and name not in PRETRAIN_RECIPES:
        known = sorted(set(domain.recipes) | set(PRETRAIN_RECIPES))
        raise ConfigError(f"unknown recipe {name!r} for pretraining in domain {domain.name!r}; available: {', '.join(known)}")
    base = dict(domain.recipes.get(name, domain.recipes["default"]))  # e.g. gpu: the domain's default model, the core GPU schedule
    merged = deep_merge(base, PRETRAIN_RECIPES.get(name, PRETRAIN_RECIPES["default"]))
    own = base.get("pretrain", {}) if isinstance(base.get("pretrain"), Mapping) else {}
    merged = deep_merge(merged, {"pretrain": own})
    return deep_merge(merged, {"train": dict(own.get("train", {}))})


def resolve_pretrain_config(domain: Domain, recipe: str | None = None, config_file: Path | None = None, overrides: Sequence[str] = (), extra: Mapping[str, Any] | None = None) -> RunConfig:
    """`mmapps.workflows.resolve.resolve_config` over the pretraining recipe (see the module docstring)."""
    from mmapps.config import read_yaml_config
    from mmapps.workflows.resolve import resolve_config

    name = recipe or (read_yaml_config(config_file).get("recipe") if config_file else None) or "default"
    recipes = {**domain.recipes, name: pretrain_recipe(domain, name)}
    return resolve_config(replace(domain, recipes=recipes), name, config_file, overrides, extra)
