"""Resolve a run config: core defaults <- domain recipe <- YAML file <- ``--set`` overrides."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from mmapps.config import RunConfig, deep_merge, parse_override, read_yaml_config, validate_config, validate_options
from mmapps.domain import Domain, resolve
from mmapps.errors import ConfigError


def resolve_config(domain: Domain, recipe: str | None = None, config_file: Path | None = None, overrides: Sequence[str] = (), extra: Mapping[str, Any] | None = None) -> RunConfig:
    """Build the validated `RunConfig` of a run.

    Args:
        domain: the domain.
        recipe: recipe name (wins over the file's ``recipe`` field); default ``"default"``.
        config_file: optional YAML file of field values (may name a ``recipe``).
        overrides: ``KEY=VALUE`` strings with dotted keys.
        extra: values set by CLI options (``--data``, ``--out``...), applied last.
    """
    file_values = read_yaml_config(config_file) if config_file else {}
    name = recipe or file_values.pop("recipe", None) or "default"
    file_values.pop("recipe", None)
    if name not in domain.recipes:
        raise ConfigError(f"unknown recipe {name!r} for domain {domain.name!r}; available: {', '.join(sorted(domain.recipes))}")
    values: dict[str, Any] = {"domain": domain.name, "recipe": name}
    values = deep_merge(values, domain.recipes[name])
    values = deep_merge(values, file_values)
    for text in overrides:
        values = deep_merge(values, parse_override(text))
    values = deep_merge(values, dict(extra or {}))
    values["domain"], values["recipe"] = domain.name, name
    _drop_stale_fusion_options(values, domain.recipes[name])
    cfg = validate_config(values)
    if domain.data_options is not None:
        cfg.data.options = validate_options(resolve(domain.data_options), cfg.data.options, "data.options").model_dump(mode="json")
    return cfg


def _drop_stale_fusion_options(values: dict[str, Any], recipe: Mapping[str, Any]) -> None:
    """Options written for the recipe's fusion do not apply once another fusion is chosen."""
    recipe_fusion = recipe.get("model", {}).get("fusion", {})
    fusion = values.get("model", {}).get("fusion", {})
    if fusion.get("name", "attention") != recipe_fusion.get("name", "attention") and fusion.get("options") == recipe_fusion.get("options"):
        fusion["options"] = {}


def cache_home() -> Path:
    """``$MMAPPS_CACHE``, else ``$XDG_CACHE_HOME/mmapps``, else ``~/.cache/mmapps``."""
    if os.environ.get("MMAPPS_CACHE"):
        return Path(os.environ["MMAPPS_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "mmapps"


def default_run_dir(cfg: RunConfig) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.domain}-{cfg.recipe}-{cfg.model.fusion.name}-s{cfg.seed}-{stamp}"


def ensure_data_root(cfg: RunConfig, domain: Domain) -> RunConfig:
    """Return `cfg` with ``data.root`` set, writing the domain's demo data once when it is unset."""
    if cfg.data.root is not None:
        if not Path(cfg.data.root).exists():
            raise ConfigError(f"data.root {cfg.data.root}: no such folder; give the folder holding your data, or leave it unset for the demo data")
        return cfg
    demo_dir = cfg.data.demo_dir or cache_home() / demo_folder_name(domain, cfg.data.demo_n)
    root = write_demo_once(domain, Path(demo_dir), cfg.data.demo_n, seed=0)
    return cfg.model_copy(update={"data": cfg.data.model_copy(update={"root": root})})


def demo_folder_name(domain: Domain, n: int) -> str:
    """Cache folder of a domain's demo data: ``<domain>-demo-n<N>``, plus ``-v<version>`` after a generator change."""
    suffix = f"-v{domain.demo_version}" if domain.demo_version != 1 else ""
    return f"{domain.name}-demo-n{n}{suffix}"


def write_demo_once(domain: Domain, out: Path, n: int, seed: int = 0) -> Path:
    """Write demo data into `out` unless a complete copy is there (a marker file records completion)."""
    marker = out / ".mmapps-demo-complete"
    if marker.exists():
        return Path(marker.read_text().strip() or out)
    out.mkdir(parents=True, exist_ok=True)
    root = resolve(domain.write_demo_data)(out, n, seed)
    marker.write_text(str(Path(root)))
    return Path(root)
