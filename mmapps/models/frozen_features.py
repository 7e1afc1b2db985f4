"""Frozen encoder outputs on disk: computed once per input, shared by every later run and process.

A frozen text encoder's token features depend only on the text, the weights, the tokenizer and
``max_length``, yet every run recomputed them: in a label-efficiency study (dozens of fine-tunings
on one dataset) the frozen transformer was two thirds of each run's time. An encoder opts in with
two methods, and the workflows that read a user's dataset (train, pretrain, evaluate, predict)
attach the store through `attach_frozen_feature_stores`:

- ``frozen_feature_config() -> dict | None``: everything its frozen output depends on (a digest
  of the weights, the tokenizer, the options, library versions), or None when it has no frozen
  output (a trained encoder);
- it then reads through ``frozen_feature_store(self)`` (a `mmapps.data.cache.SampleCache`, or None).

Entries live in the one preprocessed-sample cache (``cache.*`` settings, namespace
``frozen-features``; ``cache.frozen_features=false`` keeps them in memory only): arrays in safetensors, HMAC-signed, size-capped, nothing unpickled; entry
names are keyed HMACs of a SHA-256 of the input, so no text appears on disk. Served requests are
never stored (the service does not attach a store).
"""

from __future__ import annotations

import hashlib
import weakref
from typing import Any

import torch
from torch import nn

NAMESPACE = "frozen-features"
FORMAT = 1

_STORES: weakref.WeakKeyDictionary[nn.Module, Any] = weakref.WeakKeyDictionary()  # a copied model (deepcopy) holds no store


def attach_frozen_feature_stores(model: nn.Module, cfg: Any) -> int:
    """Give every opted-in submodule of `model` its store (none with ``cache.enabled=false``); returns how many."""
    from mmapps.data.cache import open_cache

    settings = getattr(cfg, "cache", None)
    if not isinstance(model, nn.Module) or (settings is not None and not getattr(settings, "frozen_features", True)):  # an export on onnxruntime, or switched off
        return 0
    attached = 0
    for module in model.modules():
        describe = getattr(module, "frozen_feature_config", None)
        config = describe() if callable(describe) else None
        if config is None:
            continue
        store = open_cache(cfg, NAMESPACE, {"format": FORMAT, "torch": torch.__version__, **config})
        if store is not None:
            _STORES[module] = store
            attached += 1
    return attached


def frozen_feature_store(module: nn.Module) -> Any:
    """The store attached to `module`, or None."""
    return _STORES.get(module)


def weights_digest(module: nn.Module) -> str:
    """SHA-256 over the names, dtypes, shapes and values of a module's parameters and buffers."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}\0{flat.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return digest.hexdigest()


def input_key(text: str, **context: Any) -> dict[str, Any]:
    """The per-entry part of a key: a SHA-256 of the input (never the input itself) and what else changes the output."""
    return {"input": hashlib.sha256(text.encode("utf-8")).hexdigest(), **context}
