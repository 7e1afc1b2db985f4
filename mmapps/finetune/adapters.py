"""LoRA and IA3 adapters through ``peft``, injected part by part; merging them back into plain weights.

Each part gets its own ``peft`` config (rank, alpha, dropout, targets) injected into that
submodule only, under the adapter name ``default``. The attention fusion's packed in-projection is
split into ``q_proj``/``k_proj``/``v_proj`` first (`SdpaSelfAttention.split_projections`, same
outputs), since ``peft`` wraps ``nn.Linear`` modules, not a packed parameter. PyTorch's
``nn.MultiheadAttention``/``nn.TransformerEncoderLayer`` inference fast path reads raw weights and
would skip adapters: it is switched off around every such module of an adapted part.
"""

from __future__ import annotations

import copy
import sys
from typing import Any

import torch
from torch import nn

from mmapps.config import PartFinetuneConfig
from mmapps.errors import ConfigError
from mmapps.models.fusions.sdpa_layer import SdpaSelfAttention

ADAPTER = "default"
ADAPTER_KEYS = ("lora_", "ia3_")
_SDPA_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
_HF_TARGETS = ["query", "key", "value"]
_ADAPTABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.MultiheadAttention)
_FAST_PATH = (nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerEncoder)


def default_targets(part: nn.Module) -> list[str]:
    """Attention projections where the part has attention, else every Linear/Conv module (names inside the part)."""
    if any(isinstance(m, SdpaSelfAttention) for m in part.modules()):
        return list(_SDPA_TARGETS)
    pytorch_attention = [name for name, m in part.named_modules() if isinstance(m, nn.MultiheadAttention) and name]
    if pytorch_attention:  # peft's LoRA attention layer adapts the packed in-projection and out_proj together
        return pytorch_attention
    names = {name.split(".")[-1] for name, m in part.named_modules() if isinstance(m, nn.Linear)}
    if set(_HF_TARGETS) <= names:
        return list(_HF_TARGETS)
    return [name for name, m in part.named_modules() if isinstance(m, _ADAPTABLE) and name]


def inject_adapters(part_name: str, part: nn.Module, cfg: PartFinetuneConfig) -> list[str]:
    """Inject a LoRA or IA3 adapter into `part` in place; return the adapted module names.

    Raises:
        ConfigError: a target module that is not in the part or is of a kind peft cannot adapt.
    """
    from peft import IA3Config, LoraConfig, inject_adapter_in_model

    for module in part.modules():
        if isinstance(module, SdpaSelfAttention):
            module.split_projections()
    targets = list(cfg.target_modules) if cfg.target_modules else default_targets(part)
    where = f"finetune.parts.{part_name}.target_modules"
    if not targets:
        raise ConfigError(f"{where}: part {part_name!r} has no Linear or Conv module to adapt; use mode full, frozen or last_n for it")
    inside_attention = [c for c in _attention_children(part) if any(c == t or c.endswith("." + t) for t in targets)]
    if inside_attention:
        raise ConfigError(f"{where}: {inside_attention[:3]} sit inside nn.MultiheadAttention, which reads their weights directly "
                          "(an adapter there would be skipped); target the attention module itself instead, e.g. 'self_attn'")
    candidates = adaptable_modules(part)
    unknown = [t for t in targets if not any(c == t or c.endswith("." + t) for c in candidates)]
    if unknown:
        raise ConfigError(f"{where}: {unknown} match no Linear/Conv/attention module of part {part_name!r}; its adaptable modules are {_shorten(candidates)}")
    if cfg.mode == "ia3" and any(isinstance(part.get_submodule(c), nn.MultiheadAttention) for c in candidates if any(c == t or c.endswith("." + t) for t in targets)):
        raise ConfigError(f"{where}: ia3 cannot adapt nn.MultiheadAttention in part {part_name!r}; use lora for it, or target its Linear modules")
    if cfg.mode == "lora":
        peft_cfg: Any = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=targets, bias="none")
    else:
        peft_cfg = IA3Config(target_modules=targets, feedforward_modules=[])
    try:
        inject_adapter_in_model(peft_cfg, part, adapter_name=ADAPTER)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{where}: peft could not adapt part {part_name!r} with {cfg.mode} ({str(err).splitlines()[0]})") from None
    if hasattr(part, "peft_config"):
        del part.peft_config  # peft's bookkeeping attribute; the run config is the record
    for module in part.modules():
        if isinstance(module, _FAST_PATH):
            module.register_forward_pre_hook(_fast_path_off)
            module.register_forward_hook(_fast_path_restore)
    return [name for name, m in part.named_modules() if is_adapter_layer(m)]


def adaptable_modules(part: nn.Module) -> list[str]:
    """Names (inside `part`) of the modules peft can adapt, children of ``nn.MultiheadAttention`` excluded."""
    inner = set(_attention_children(part))
    return sorted(name for name, m in part.named_modules() if isinstance(m, _ADAPTABLE) and name and name not in inner)


def _attention_children(part: nn.Module) -> list[str]:
    return [f"{name}.{child}" for name, m in part.named_modules() if isinstance(m, nn.MultiheadAttention) and name for child, _ in m.named_modules() if child]


def is_adapter_layer(module: nn.Module) -> bool:
    if "peft" not in sys.modules:  # adapters exist only once peft is imported (seconds): a plain model needs no import
        return False
    from peft.tuners.tuners_utils import BaseTunerLayer

    return isinstance(module, BaseTunerLayer)


def has_adapters(model: nn.Module) -> bool:
    return any(is_adapter_layer(m) for m in model.modules())


def unload_adapters(model: nn.Module) -> nn.Module:
    """Merge every adapter into its base layer and put the plain layer back, in place; repack attention.

    The result has the state-dict layout of a model built without adapters (a normal checkpoint).
    """
    import warnings

    while True:  # outermost first; peft's attention layer holds a nested adapter in its out_proj, merged with it
        name, module = next(((n, m) for n, m in model.named_modules() if n and is_adapter_layer(m)), ("", None))
        if module is None:
            break
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="All adapters are already merged")
            module.merge(safe_merge=True)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, module.get_base_layer())
    for module in model.modules():
        if isinstance(module, SdpaSelfAttention):
            module.pack_projections()
    return model


def merged_copy(model: nn.Module) -> nn.Module:
    """A merged, adapter-free copy of `model` (the model itself when it has no adapters)."""
    if not has_adapters(model):
        return model
    return unload_adapters(copy.deepcopy(model))


def _fast_path_off(module: nn.Module, args: Any) -> None:
    module._mmapps_fast_path = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)


def _fast_path_restore(module: nn.Module, args: Any, output: Any) -> None:
    torch.backends.mha.set_fastpath_enabled(getattr(module, "_mmapps_fast_path", True))


def _shorten(names: list[str], n: int = 12) -> str:
    return ", ".join(names[:n]) + (f" ... ({len(names)} in all)" if len(names) > n else "") if names else "none"
