"""A Triton Inference Server model repository beside the export: ``triton/<name>/1/model.onnx`` + ``config.pbtxt``.

The config is built as tritonclient's ``model_config_pb2.ModelConfig`` and written with protobuf's
text format, so it is exactly what Triton parses: ``name`` equals the folder, ``backend:
"onnxruntime"``, one input/output per graph tensor (presence inputs TYPE_BOOL), ``instance_group``
KIND_CPU (pass ``instance_kind="KIND_GPU"`` for a GPU server with the onnxruntime CUDA / TensorRT
execution providers).

Batching: when every input and output has the batch axis first, ``max_batch_size`` > 0 and the
batch axis is left out of ``dims``; the dynamic batcher is on. Triton batches only requests of
equal shapes, so clients pad text to the tokenizer's ``max_length`` and padded modalities to the
recipe's maximum element count (``mmapps.export.fusion_io.FusionRuntime(pad_text="max_length")``).
Models with ragged non-batch inputs use ``max_batch_size=0`` (full shapes in ``dims``); streaming
models add ``sequence_batching`` through `configure`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmapps.export.spec import TensorSpec

TRITON_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int64": "TYPE_INT64", "int32": "TYPE_INT32", "bool": "TYPE_BOOL", "uint8": "TYPE_UINT8"}
DEFAULT_MAX_BATCH = 32


def triton_config(
    name: str,
    inputs: list[TensorSpec],
    outputs: list[TensorSpec],
    max_batch_size: int | None = None,
    dynamic_batching: bool = True,
    instance_kind: str = "KIND_CPU",
    instance_count: int = 1,
    configure: Callable[[Any], None] | None = None,
) -> Any:
    """The ``ModelConfig`` of one exported graph.

    Args:
        name: model name (the repository folder).
        inputs, outputs: the graph's tensors (from the sidecar).
        max_batch_size: None = `DEFAULT_MAX_BATCH` when every tensor is batched, else 0; 0 = no
            Triton batching (dims are the full shapes).
        dynamic_batching: add ``dynamic_batching`` when ``max_batch_size`` > 0.
        instance_kind: ``KIND_CPU`` or ``KIND_GPU``.
        configure: called with the config before it is returned (e.g. to add ``sequence_batching``).
    """
    from tritonclient.grpc import model_config_pb2 as mc

    batched = all(s.batched for s in (*inputs, *outputs))
    if max_batch_size is None:
        max_batch_size = DEFAULT_MAX_BATCH if batched else 0
    if max_batch_size > 0 and not batched:
        unbatched = [s.name for s in (*inputs, *outputs) if not s.batched]
        raise ValueError(f"triton config {name!r}: max_batch_size={max_batch_size} needs the batch axis first on every tensor; {unbatched} have none (use max_batch_size=0)")
    config = mc.ModelConfig(name=name, backend="onnxruntime", max_batch_size=max_batch_size)
    config.default_model_filename = "model.onnx"
    skip = 1 if max_batch_size > 0 else 0
    for spec, target in [(s, config.input) for s in inputs] + [(s, config.output) for s in outputs]:
        dims = [-1 if isinstance(a, str) else int(a) for a in spec.shape[skip:]]
        entry = target.add(name=spec.name, data_type=mc.DataType.Value(TRITON_TYPES[spec.dtype]), dims=dims)
        if not dims:  # a (batch,) tensor such as a presence flag: Triton needs a shape, so [1] reshaped to []
            entry.dims.append(1)
            entry.reshape.SetInParent()
    if max_batch_size > 0 and dynamic_batching:
        config.dynamic_batching.max_queue_delay_microseconds = 2000
    config.instance_group.add(kind=mc.ModelInstanceGroup.Kind.Value(instance_kind), count=instance_count)
    if configure is not None:
        configure(config)
    return config


def write_triton_repository(folder: Path, name: str, sidecar: Any, model_file: str = "model.onnx", **options: Any) -> Path:
    """Write ``folder/triton/<name>/{config.pbtxt, 1/model.onnx[, model.onnx.data]}``; returns the model folder.

    `options` go to `triton_config`. The ONNX file (and its external data) is hard-linked when the file
    system allows it, else copied.
    """
    from google.protobuf import text_format

    model_dir = Path(folder) / "triton" / name
    version = model_dir / "1"
    version.mkdir(parents=True, exist_ok=True)
    for source in sorted(Path(folder).glob(f"{model_file}*")):
        if source.is_file() and (source.name == model_file or source.name == f"{model_file}.data"):
            _link_or_copy(source, version / source.name.replace(model_file, "model.onnx", 1))
    config = triton_config(name, sidecar.inputs, sidecar.outputs, **options)
    (model_dir / "config.pbtxt").write_text(text_format.MessageToString(config))
    return model_dir


def read_triton_config(path: Path) -> Any:
    """Parse a ``config.pbtxt`` back into a ``ModelConfig`` (raises on any syntax or field error)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    return text_format.Parse(Path(path).read_text(), mc.ModelConfig())


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
