"""Trace an `ExportAdapter`'s module with ``torch.onnx.export(dynamo=True)`` and save the ONNX file."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from mmapps.errors import MmappsError
from mmapps.export.spec import BATCH_AXIS, TensorSpec


def widen(feeds: dict[str, np.ndarray], inputs: list[TensorSpec]) -> dict[str, np.ndarray]:
    """Tracing inputs with every symbolic axis of size >= 2 (exporters specialise sizes 0 and 1).

    The batch axis grows by repeating samples; another symbolic axis of size 1 grows by one zero
    slot (padding: mask, attention and presence are zero/False there).
    """
    batch = max((v.shape[0] for s in inputs for v in [feeds[s.name]] if s.batched), default=2)
    out = {}
    for spec in inputs:
        value = feeds[spec.name]
        if spec.batched and batch < 2:
            value = np.concatenate([value, value], axis=0)
        for axis, symbol in enumerate(spec.shape):
            if isinstance(symbol, str) and symbol != BATCH_AXIS and value.shape[axis] < 2:
                pad = [(0, 0)] * value.ndim
                pad[axis] = (0, 2 - value.shape[axis])
                value = np.pad(value, pad)
        out[spec.name] = value
    return out


def write_onnx(adapter: Any, feeds: dict[str, np.ndarray], path: Path, opset: int, module: Any = None, optimize: bool = True) -> Path:
    """Export `adapter.module` (or `module`, which takes the same inputs) on `feeds` (widened) to `path`;
    weights over 1 GiB go to ``<path>.data``. `optimize` False skips onnxscript's rewrites (a bf16 graph:
    its BatchNorm fusion leaves fp32 biases on bf16 convolutions)."""
    import torch

    module = adapter.module if module is None else module

    from mmapps.export.graph import dynamic_shapes

    example = widen(feeds, adapter.inputs)
    args = tuple(torch.from_numpy(np.ascontiguousarray(example[s.name])) for s in adapter.inputs)
    shapes = (tuple(dynamic_shapes(adapter.inputs).values()),)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module, args, dynamo=True, opset_version=opset, dynamic_shapes=shapes, optimize=optimize,
                input_names=[s.name for s in adapter.inputs], output_names=[o.name for o in adapter.outputs], verbose=False,
            )
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ExportFailed(f"export: torch.onnx.export(dynamo=True) failed for {type(module).__name__} ({type(err).__name__}: {first}); run with --debug for the full trace") from err
    size = sum(p.numel() * p.element_size() for p in module.parameters())
    path.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(path), external_data=size > (1 << 30))
    return path


class ExportFailed(MmappsError):
    """torch.onnx.export could not trace or translate the model."""

    exit_code = 9
