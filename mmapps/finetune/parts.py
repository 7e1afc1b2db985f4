"""Where a model's parts are: the encoders (by modality), the fusion, the heads, and each part's layer stack.

The core `FusionModel` (and wrappers exposing it as ``.core``) has ``encoders[m]``, ``fusion`` and
``heads``. Any other model (a domain's own, e.g. the driving detector) is split into its top-level
children: ``head``/``heads`` are the heads, every other child with parameters is a part.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

HEAD_NAMES = ("head", "heads")
_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


@dataclass(frozen=True)
class ModelParts:
    """Part name -> (module path in the model, module); heads the same way."""

    parts: dict[str, tuple[str, nn.Module]]
    heads: dict[str, tuple[str, nn.Module]]


def find_parts(model: nn.Module) -> ModelParts:
    """The adaptable parts and the heads of `model` (see the module docstring)."""
    root, prefix = model, ""
    while hasattr(root, "core") and isinstance(root.core, nn.Module):
        root, prefix = root.core, prefix + "core."
    if isinstance(getattr(root, "encoders", None), nn.ModuleDict) and isinstance(getattr(root, "fusion", None), nn.Module):
        parts = {m: (f"{prefix}encoders.{m}", enc) for m, enc in root.encoders.items()}
        parts["fusion"] = (f"{prefix}fusion", root.fusion)
        heads = {"heads": (f"{prefix}heads", root.heads)} if isinstance(getattr(root, "heads", None), nn.Module) else {}
        return ModelParts(parts, heads)
    parts, heads = {}, {}
    for name, child in root.named_children():
        if not any(True for _ in child.parameters()):
            continue
        (heads if name in HEAD_NAMES else parts)[name] = (prefix + name, child)
    return ModelParts(parts, heads)


def layer_units(part: nn.Module) -> tuple[list[list[nn.Module]], list[nn.Module]]:
    """(layers, after): the part's layer stack and the parameterised modules registered after it.

    The stack is the part's largest ``nn.Sequential``/``nn.ModuleList`` by parameter count (a CNN
    trunk, a transformer's layers); its children with parameters are the layers, a normalisation
    layer joining the layer before it (conv + BN is one layer). ``after`` holds the modules after the
    stack in registration order that own parameters (an output projection, a final norm): they are
    trained with the last N layers. A part with no stack is one layer.
    """
    stacks = [m for m in part.modules() if isinstance(m, (nn.Sequential, nn.ModuleList)) and _count(m)]
    if not stacks:
        return [[part]], []
    stack = max(stacks, key=_count)
    layers: list[list[nn.Module]] = []
    for child in stack.children():
        if not _count(child):
            continue
        if isinstance(child, _NORMS) and layers:
            layers[-1].append(child)
        else:
            layers.append([child])
    stack_ids = {id(m) for m in stack.modules()}
    seen_stack, after = False, []
    for child in part.modules():
        if child is stack:
            seen_stack = True
        elif seen_stack and id(child) not in stack_ids and _count(child, recurse=False):
            after.append(child)
    return layers, after


def _count(module: nn.Module, recurse: bool = True) -> int:
    return sum(p.numel() for p in module.parameters(recurse=recurse))
