"""The onnxruntime.quantization calls behind `mmapps.export.quantize`, and MACs per ONNX node.

MACs per node come from the tensor shapes of one real batch: the graph's symbolic input axes are
fixed to the batch's sizes and ``onnx.shape_inference`` propagates them; where it cannot (a
data-dependent size), onnxruntime runs the batch once with those tensors exposed as outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

_CALIBRATION = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}


def static_int8(source: Path, target: Path, calibration: list[dict[str, np.ndarray]], nodes: list[str], method: str = "minmax", cache: Path | None = None) -> None:
    """Static int8 QDQ of the Conv `nodes`: per-channel int8 weights, uint8 activations calibrated on `calibration` feeds
    (or read from `cache`, a JSON file of ranges an earlier call with the same graph and method wrote there)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    extra = {"CalibMovingAverage": False}
    if method == "percentile":
        extra["CalibPercentile"] = 99.999
    quantize_static(
        str(source), str(target), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=getattr(CalibrationMethod, _CALIBRATION[method]),
        op_types_to_quantize=["Conv"], nodes_to_quantize=nodes, extra_options=extra, calibration_cache_path=cache,
    )


def dynamic_int8(source: Path, target: Path, nodes: list[str]) -> None:
    """Dynamic int8 of the constant-weight MatMul/Gemm `nodes` (int8 weights per output channel, uint8 activations quantised per call)
    and of the Gather `nodes` of embedding tables (int8 table, dequantised after the lookup)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # the dynamic quantiser first rewrites Gemm as MatMul (+ Add), naming the MatMul "<gemm>_MatMul"
    names = list(nodes) + [f"{n}_MatMul" for n in nodes]
    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm", "Gather"], nodes_to_quantize=names, per_channel=True)


def quantized_sources(target: Path, convs: list[str], linear: list[str]) -> set[str]:
    """The source nodes that really run int8 in the `target` graph: Conv fed by a DequantizeLinear weight (QDQ),
    MatMul/Gemm turned into MatMulInteger / DynamicQuantizeMatMul (named ``<node>_quant`` or ``<node>_MatMul_quant``)."""
    import onnx

    model = onnx.load(str(target), load_external_data=False)
    producers = {o: n for n in model.graph.node for o in n.output}
    by_name = {n.name: n for n in model.graph.node}
    done = {n for n in convs if n in by_name and len(by_name[n].input) > 1 and getattr(producers.get(by_name[n].input[1]), "op_type", "") == "DequantizeLinear"}
    integer = {n.name for n in model.graph.node if n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul")}
    done |= {n for n in linear if f"{n}_quant" in integer or f"{n}_MatMul_quant" in integer}
    return done


def node_macs(model: Any, feeds: dict[str, np.ndarray]) -> dict[str, int]:
    """Node name -> MACs on the batch `feeds`, for every Conv, ConvTranspose, MatMul and Gemm node."""
    shapes = _shapes(model, feeds)
    weights = {t.name: list(t.dims) for t in model.graph.initializer}
    macs: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose", "MatMul", "Gemm"):
            continue
        out = shapes.get(node.output[0])
        a = shapes.get(node.input[0])
        w = weights.get(node.input[1]) or shapes.get(node.input[1]) if len(node.input) > 1 else None
        if out is None or a is None or w is None:
            macs[node.name] = 0
            continue
        if node.op_type == "Conv":
            macs[node.name] = int(np.prod(out)) * int(np.prod(w[1:]))
        elif node.op_type == "ConvTranspose":
            macs[node.name] = int(np.prod(a)) * int(np.prod(w[1:]))
        elif node.op_type == "MatMul":
            macs[node.name] = int(np.prod(out)) * int(a[-1])
        else:
            trans_a = next((attr.i for attr in node.attribute if attr.name == "transA"), 0)
            macs[node.name] = int(np.prod(out)) * int(a[0] if trans_a else a[-1])
    return macs


def _shapes(model: Any, feeds: dict[str, np.ndarray]) -> dict[str, list[int]]:
    import onnx

    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for value in fixed.graph.input:
        if value.name in feeds:
            dims = value.type.tensor_type.shape.dim
            for dim, size in zip(dims, feeds[value.name].shape):
                dim.Clear()
                dim.dim_value = int(size)
    try:
        inferred = onnx.shape_inference.infer_shapes(fixed, strict_mode=False, data_prop=True)
    except Exception:  # an op shape inference does not know: measure instead
        inferred = fixed
    shapes = {}
    for value in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = [d.dim_value for d in dims]
    wanted = {name for node in model.graph.node if node.op_type in ("Conv", "ConvTranspose", "MatMul", "Gemm") for name in (node.input[0], node.input[1], node.output[0])}
    initializers = {t.name for t in model.graph.initializer}
    missing = sorted(wanted - set(shapes) - initializers)
    if missing:
        shapes.update(_measured_shapes(model, feeds, missing))
    return shapes


def _measured_shapes(model: Any, feeds: dict[str, np.ndarray], names: list[str]) -> dict[str, list[int]]:
    """Run the graph once with `names` as extra outputs and read their shapes."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    present = {o.name for o in probe.graph.output}
    for name in names:
        if name not in present:
            probe.graph.output.append(onnx.ValueInfoProto(name=name))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(probe.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"])
        values = session.run(names, feeds)
    except Exception:  # shapes stay unknown: those nodes count 0 MACs (reported as such)
        return {}
    return {name: list(value.shape) for name, value in zip(names, values)}
