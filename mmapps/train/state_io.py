"""A pickle-free file format for nested state: tensors in safetensors, everything else in JSON.

`dumps` takes a tree of dicts, lists, tuples, tensors and plain values (None, bool, int, float,
str), such as a model + optimiser ``state_dict`` and the loop's counters, and returns one
safetensors file: every tensor is stored under a name derived from its place in the tree, and the
rest of the tree, with ``{"$tensor": name}`` where each tensor was, is JSON in the file's metadata
(key ``layout``), beside ``format`` and ``format_version``. `loads` is the exact inverse: types
that JSON would blur are tagged (``$tuple``, ``$float`` for NaN and the infinities, ``$dict`` for a
mapping whose keys are not all strings or that could be mistaken for a tag), so an optimiser's
integer-keyed state and its ``betas`` tuples come back as they went in, and tensors keep their
dtype, shape and bits. One file means one atomic rename: tensors and layout can never disagree.

Reading never executes anything from the file: safetensors holds raw arrays behind a JSON header,
and the layout is parsed with `json.loads` and walked by this module alone.
"""

from __future__ import annotations

import json
import math
from typing import Any

import torch

FORMAT = "mmapps-state"
FORMAT_VERSION = 1
_TAGS = ("$tensor", "$tuple", "$float", "$dict")


class StateFormatError(ValueError):
    """The bytes are not a state file of this format (or of a newer version); the message says which part."""


def _join(path: str, key: Any) -> str:
    return f"{path}/{key}" if path else str(key)


def _encode(value: Any, path: str, tensors: dict[str, torch.Tensor], storages: set[int]) -> Any:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        pointer = tensor.untyped_storage().data_ptr()
        if pointer and pointer in storages:  # safetensors refuses tensors that share memory (views, tied weights)
            tensor = tensor.clone()
        storages.add(tensor.untyped_storage().data_ptr())
        name = path or "."  # a tensor at the root
        while name in tensors:  # keys containing "/" can map two paths to one name
            name += "'"
        tensors[name] = tensor
        return {"$tensor": name}
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else {"$float": repr(float(value))}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and not any(k.startswith("$") for k in value):
            return {k: _encode(v, _join(path, k), tensors, storages) for k, v in value.items()}
        if any(isinstance(k, torch.Tensor) for k in value):
            raise TypeError(f"state at {path or '/'}: a dict keyed by tensors cannot be stored")
        return {"$dict": [[_encode(k, _join(path, "key"), {}, set()), _encode(v, _join(path, k), tensors, storages)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"$tuple": [_encode(v, _join(path, i), tensors, storages) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, _join(path, i), tensors, storages) for i, v in enumerate(value)]
    raise TypeError(f"state at {path or '/'}: a {type(value).__module__}.{type(value).__qualname__} cannot be stored; only tensors, dicts, lists, tuples, None, bool, int, float and str are")


def _decode(node: Any, tensors: dict[str, torch.Tensor] | None) -> Any:
    if isinstance(node, list):
        return [_decode(v, tensors) for v in node]
    if not isinstance(node, dict):
        return node
    if len(node) == 1 and next(iter(node)) in _TAGS:
        tag, body = next(iter(node.items()))
        if tag == "$tensor":
            if tensors is None:
                return None
            if body not in tensors:
                raise StateFormatError(f"the layout names the tensor {body!r}, which the file does not hold")
            return tensors[body]
        if tag == "$float" and body in ("nan", "inf", "-inf"):
            return float(body)
        if tag == "$tuple" and isinstance(body, list):
            return tuple(_decode(v, tensors) for v in body)
        if tag == "$dict" and isinstance(body, list) and all(isinstance(p, list) and len(p) == 2 for p in body):
            return {_decode(k, tensors): _decode(v, tensors) for k, v in body}
        raise StateFormatError(f"malformed {tag} entry in the layout: {json.dumps(body)[:80]}")
    return {k: _decode(v, tensors) for k, v in node.items()}


def dumps(tree: Any, kind: str) -> bytes:
    """The safetensors bytes of `tree`, labelled `kind` (checked by `loads`).

    Raises:
        TypeError: a value that is not a tensor, container or plain value (a programming error).
    """
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    layout = _encode(tree, "", tensors, set())
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "kind": kind, "layout": json.dumps(layout, allow_nan=False, separators=(",", ":"))}
    return save(tensors, metadata=metadata)


def read_metadata(path: Any) -> dict[str, str]:
    """The safetensors metadata of the file at `path` (no tensor is read).

    Raises:
        StateFormatError: not a readable safetensors file.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return handle.metadata() or {}
    except Exception as err:  # safetensors raises several error types for bad headers
        raise StateFormatError(f"not a readable safetensors file ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None


def load(path: Any, kind: str, tensors: bool = True) -> Any:
    """The tree `dumps` wrote to the file at `path`; with ``tensors=False`` every tensor reads as None
    and no tensor data is read (cheap access to counters and history).

    Raises:
        StateFormatError: not a safetensors file, not this format, another `kind`, a newer
            format version, or a layout that does not match the tensors.
    """
    from safetensors import safe_open

    metadata = read_metadata(path)
    if metadata.get("format") != FORMAT or metadata.get("kind") != kind:
        raise StateFormatError(f"a safetensors file, but not an mmapps {kind} (format={metadata.get('format')!r}, kind={metadata.get('kind')!r})")
    version = metadata.get("format_version", "")
    if not version.isdigit() or int(version) > FORMAT_VERSION:
        raise StateFormatError(f"format version {version!r}, but this mmapps reads versions up to {FORMAT_VERSION}; use the mmapps version that wrote it")
    try:
        layout = json.loads(metadata["layout"])
    except (KeyError, ValueError) as err:
        raise StateFormatError(f"its layout metadata is missing or not JSON ({type(err).__name__})") from None
    values = None
    if tensors:
        try:
            with safe_open(str(path), framework="pt") as handle:
                values = {key: handle.get_tensor(key) for key in handle.keys()}
        except Exception as err:
            raise StateFormatError(f"its tensor data cannot be read ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); it may be truncated") from None
    return _decode(layout, values)
