"""KServe v2 / Triton tensors <-> numpy, and a v2 batch of tensors -> per-sample `mmapps.data.Sample`s.

Inputs of an mmapps model on the tensor protocol, per modality ``m`` of its layout:

- fixed: ``m`` FP32 ``[B, ...]``;
- padded: ``m`` FP32 ``[B, E, ...]`` and optionally ``m__mask`` BOOL ``[B, E]`` (elements kept);
- packed: ``m`` FP32 ``[N, F]`` (rows of every sample) and ``m__offsets`` INT64 ``[B + 1]``;
- text: ``m`` BYTES ``[B]`` (UTF-8);
- any layout: ``m__present`` BOOL ``[B]`` (default all true). A modality not sent is absent
  for every sample (served with presence false, as the model supports).

Outputs: the raw head outputs, ``<task>`` or ``<task>.<key>``, FP32 ``[B, ...]``.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from mmapps.serve.errors import ServeError

V2_TO_NUMPY = {"BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16,
               "INT32": np.int32, "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64}
NUMPY_TO_V2 = {np.dtype(v).name: k for k, v in V2_TO_NUMPY.items()}


def _bad(message: str) -> ServeError:
    return ServeError(400, "bad_tensor", message)


def parse_infer_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON request and its tensors by name; ``header_length``: the binary extension's ``Inference-Header-Content-Length``."""
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise _bad(f"Inference-Header-Content-Length {header_length[:20]!r}: expected the byte length of the JSON header (at most the body's {len(body)} bytes)")
        head, blob = body[: int(header_length)], body[int(header_length):]
    else:
        head, blob = body, b""
    try:
        request = json.loads(head)
    except (ValueError, UnicodeDecodeError):
        raise _bad("the body is not JSON: expected {\"inputs\": [{\"name\", \"shape\", \"datatype\", \"data\"}, ...]} (KServe v2 inference request)") from None
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list) or not request["inputs"]:
        raise _bad("expected a JSON object with a non-empty \"inputs\" list of {\"name\", \"shape\", \"datatype\", \"data\"} (KServe v2 inference request)")
    tensors: dict[str, np.ndarray] = {}
    offset = 0
    for number, item in enumerate(request["inputs"]):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not isinstance(item.get("shape"), list) or item.get("datatype") not in (*V2_TO_NUMPY, "BYTES"):
            raise _bad(f"inputs[{number}]: expected {{\"name\": str, \"shape\": [int...], \"datatype\": one of {sorted([*V2_TO_NUMPY, 'BYTES'])}, \"data\": [...]}}")
        shape = item["shape"]
        if not all(isinstance(d, int) and d >= 0 for d in shape):
            raise _bad(f"input {item['name']!r}: shape must be a list of non-negative integers")
        size = int(np.prod(shape)) if shape else 1
        binary = (item.get("parameters") or {}).get("binary_data_size")
        if binary is not None:
            if not isinstance(binary, int) or binary < 0 or offset + binary > len(blob):
                raise _bad(f"input {item['name']!r}: binary_data_size {binary!r} runs past the end of the body")
            raw, offset = blob[offset: offset + binary], offset + binary
            tensors[item["name"]] = _from_binary(raw, item["datatype"], shape, size, item["name"])
        else:
            tensors[item["name"]] = _from_json(item.get("data"), item["datatype"], shape, size, item["name"])
    return request, tensors


def _from_binary(raw: bytes, datatype: str, shape: list[int], size: int, name: str) -> np.ndarray:
    if datatype == "BYTES":
        values, pos = [], 0
        while pos + 4 <= len(raw):
            n = int.from_bytes(raw[pos: pos + 4], "little")
            values.append(raw[pos + 4: pos + 4 + n])
            pos += 4 + n
        if len(values) != size:
            raise _bad(f"input {name!r}: {len(values)} BYTES elements for shape {shape}")
        return np.array(values, dtype=object).reshape(shape)
    dtype = np.dtype(V2_TO_NUMPY[datatype])
    if len(raw) != size * dtype.itemsize:
        raise _bad(f"input {name!r}: {len(raw)} bytes for shape {shape} of {datatype} (expected {size * dtype.itemsize})")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def _from_json(data: Any, datatype: str, shape: list[int], size: int, name: str) -> np.ndarray:
    if not isinstance(data, list):
        raise _bad(f"input {name!r}: \"data\" must be a (flat or nested) list of {size} value(s)")
    try:
        if datatype == "BYTES":
            flat = np.array([v.encode() if isinstance(v, str) else v for v in _flatten(data)], dtype=object)
        else:
            flat = np.asarray(data, dtype=V2_TO_NUMPY[datatype]).reshape(-1)
    except (TypeError, ValueError):
        raise _bad(f"input {name!r}: \"data\" holds values that are not {datatype}") from None
    if flat.size != size:
        raise _bad(f"input {name!r}: {flat.size} value(s) for shape {shape} ({size} expected)")
    return flat.reshape(shape)


def _flatten(data: Any) -> list:
    return [x for item in data for x in _flatten(item)] if isinstance(data, list) else [data]


def to_output(name: str, array: np.ndarray, binary: bool) -> tuple[dict[str, Any], bytes]:
    """A v2 output entry (and its binary bytes when ``binary``)."""
    array = np.ascontiguousarray(array.astype(np.float32) if array.dtype.kind == "f" else array)
    entry: dict[str, Any] = {"name": name, "datatype": NUMPY_TO_V2.get(array.dtype.name, "FP32"), "shape": list(array.shape)}
    if binary:
        raw = array.tobytes()
        entry["parameters"] = {"binary_data_size": len(raw)}
        return entry, raw
    entry["data"] = array.reshape(-1).tolist()
    return entry, b""


def samples_from_tensors(tensors: dict[str, np.ndarray], modality_to_layout: dict[str, str]) -> list[Any]:
    """Per-sample `Sample`s from a v2 batch (see the module docstring for the input names)."""
    import torch

    from mmapps.data import Sample

    known = set(modality_to_layout) | {f"{m}__{s}" for m in modality_to_layout for s in ("present", "mask", "offsets")}
    unknown = sorted(set(tensors) - known)
    if unknown:
        raise _bad(f"inputs {unknown}: not inputs of this model; accepted: {sorted(known)} (see GET /v2/models/<name>)")
    sizes = {}
    for m, layout in modality_to_layout.items():
        if m in tensors:
            sizes[m] = len(tensors[f"{m}__offsets"]) - 1 if layout == "packed" and f"{m}__offsets" in tensors else tensors[m].shape[0] if tensors[m].ndim else 0
        if f"{m}__present" in tensors:
            sizes[f"{m}__present"] = tensors[f"{m}__present"].shape[0]
    if not sizes:
        raise _bad(f"no modality input sent; send at least one of {sorted(modality_to_layout)}")
    if len(set(sizes.values())) != 1:
        raise _bad(f"inputs disagree on the batch size: {sizes}")
    batch = next(iter(sizes.values()))
    samples = []
    for i in range(batch):
        inputs: dict[str, Any] = {}
        for m, layout in modality_to_layout.items():
            present = tensors.get(f"{m}__present")
            if m not in tensors or (present is not None and not bool(present[i])):
                inputs[m] = None
                continue
            value = tensors[m]
            if layout == "text":
                item = value[i]
                inputs[m] = item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
            elif layout == "packed":
                offsets = tensors.get(f"{m}__offsets")
                if offsets is None:
                    raise _bad(f"input {m!r} is packed (rows of every sample): send {m}__offsets INT64 [B + 1] too")
                inputs[m] = torch.from_numpy(np.ascontiguousarray(value[int(offsets[i]): int(offsets[i + 1])], dtype=np.float32))
            else:
                row = np.ascontiguousarray(value[i], dtype=np.float32)
                mask = tensors.get(f"{m}__mask")
                if layout == "padded" and mask is not None:
                    row = row[np.asarray(mask[i], dtype=bool)]
                inputs[m] = torch.from_numpy(row)
        samples.append(Sample(f"v2-{i}", f"v2-{i}", inputs))
    return samples
