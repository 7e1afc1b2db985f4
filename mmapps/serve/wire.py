"""The decoder pipe's format: length-framed JSON headers and npz payloads, never a pickle.

A decoder child parses untrusted files; if one were subverted, what it sends back must not be
able to run code in the server. So samples travel as one JSON document (ids, texts, metadata)
plus one ``.npz`` of plain arrays read with ``allow_pickle=False``.
"""

from __future__ import annotations

import io
import json
import struct
from typing import Any, BinaryIO

import numpy as np

MAX_FRAME = 1 << 31


def write_frame(stream: BinaryIO, header: dict[str, Any], payload: bytes = b"") -> None:
    head = json.dumps(header).encode()
    stream.write(struct.pack("<II", len(head), len(payload)) + head + payload)
    stream.flush()


def read_frame(stream: BinaryIO) -> tuple[dict[str, Any], bytes]:
    """One frame; raises EOFError when the other side is gone."""
    sizes = _read_exact(stream, 8)
    n_head, n_payload = struct.unpack("<II", sizes)
    if n_head > MAX_FRAME or n_payload > MAX_FRAME:
        raise EOFError("frame too large")
    header = json.loads(_read_exact(stream, n_head))
    return header, _read_exact(stream, n_payload)


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = stream.read(left)
        if not chunk:
            raise EOFError("pipe closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _plain(value: Any, arrays: dict[str, np.ndarray], key: str) -> Any:
    """JSON-able form of a value; arrays and tensors go to ``arrays`` under ``key``."""
    import torch

    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        arrays[key] = value
        return {"__array__": key}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _plain(v, arrays, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, arrays, f"{key}.{i}") for i, v in enumerate(value)]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _restore(value: Any, arrays: Any, tensors: bool) -> Any:
    import torch

    if isinstance(value, dict):
        if set(value) == {"__array__"}:
            array = arrays[value["__array__"]]
            return torch.from_numpy(np.array(array)) if tensors else np.array(array)
        return {k: _restore(v, arrays, tensors) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore(v, arrays, tensors) for v in value]
    return value


def encode_samples(samples: list[Any]) -> tuple[dict[str, Any], bytes]:
    """`Sample`s -> (JSON header, npz bytes). Targets are dropped: a served request has none."""
    arrays: dict[str, np.ndarray] = {}
    items = [{"sample_id": s.sample_id, "group_id": s.group_id, "inputs": _plain(s.inputs, arrays, f"s{i}.in"), "meta": _plain(s.meta, arrays, f"s{i}.meta")}
             for i, s in enumerate(samples)]
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return {"samples": items}, buffer.getvalue()


def decode_samples(header: dict[str, Any], payload: bytes) -> list[Any]:
    """The inverse of `encode_samples` (npz read with ``allow_pickle=False``)."""
    from mmapps.data import Sample

    with np.load(io.BytesIO(payload), allow_pickle=False) as arrays:
        loaded = {k: arrays[k] for k in arrays.files}
    out = []
    for item in header.get("samples", []):
        inputs = _restore(item["inputs"], loaded, tensors=True)
        meta = _restore(item["meta"], loaded, tensors=False)
        out.append(Sample(str(item["sample_id"]), str(item["group_id"]), inputs, {}, meta))
    return out
