"""int8 quantisation of an exported graph with ``onnxruntime.quantization``, and its report.

Contract (called by `mmapps.export.quantize_call` from ``export --quantize``):
``quantize_export(folder, sidecar, loaded, method, calibration_samples, log, calibration_method="minmax") -> dict``
writes ``model.int8.onnx`` into the export `folder` beside the fp32 ``model.onnx`` and returns a
JSON-able report kept in ``model.json`` under ``quantized``.

- ``static``: the convolutions (the CNN encoders, driving's BEV backbone) get static int8 QDQ with
  per-channel weight scales (uint8 activations, int8 weights: the x86 VNNI/AVX2 kernels' pair),
  activation ranges calibrated on `calibration_samples` training samples (``minmax``, ``entropy``
  or ``percentile``); the transformer linear layers (constant-weight MatMul/Gemm) get dynamic int8,
  as with ``dynamic``.
- ``dynamic``: dynamic int8 on constant-weight MatMul/Gemm only (transformers, fusion MLPs), and
  int8 storage of large embedding tables (Gather, dequantised per lookup). Q·Kᵀ,
  probabilities·V and softmax stay fp32 (their MatMuls have no constant weight), and Conv is never
  quantised dynamically (ConvInteger with per-call activation ranges is slower than fp32 on CPU).

The report states the int8 share of the graph's MACs (MACs per node from shapes inferred on a real
batch), the op types left in fp32, the file sizes (external data included), and parity on the
validation split by the primary metric (fp32 and int8 graphs) with max |Δ| and flipped decisions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mmapps.errors import ConfigError

INT8_FILE = "model.int8.onnx"
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
COMPUTE_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm", "Einsum")


def quantize_export(folder: Path, sidecar: Any, loaded: Any, method: str, calibration_samples: int, log: Callable[[str], None] = print, calibration_method: str = "minmax") -> dict[str, Any]:
    """Quantise ``folder/<sidecar.model_file>`` into ``folder/model.int8.onnx``; return the report (see the module doc).

    Raises:
        ConfigError: an unknown method or calibration method; ``static`` without calibration samples.
    """
    from mmapps.export.session import OnnxModel

    if method not in ("static", "dynamic"):
        raise ConfigError(f"--quantize {method!r}: expected static (int8 QDQ convolutions + dynamic int8 transformer layers) or dynamic (int8 MatMul/Gemm only)")
    if calibration_method not in CALIBRATION_METHODS:
        raise ConfigError(f"--calibration-method {calibration_method!r}: expected one of {', '.join(CALIBRATION_METHODS)}")
    folder = Path(folder)
    source = folder / sidecar.model_file
    fp32 = OnnxModel(sidecar, folder)
    calibration: list[dict[str, np.ndarray]] = []
    if method == "static":
        calibration = list(_feeds(loaded.loader("train"), fp32.runtime, calibration_samples))
        if not calibration:
            raise ConfigError(
                f"--quantize static: no calibration data ({len(loaded.splits.train)} training samples, --calibration-samples {calibration_samples}); "
                "static int8 calibrates activation ranges on training samples: give --data with a training split, or use --quantize dynamic"
            )
    example = next(_feeds(loaded.loader("val"), fp32.runtime, 2))
    log(f"quantising {source.name} ({method}{', ' + calibration_method + ' calibration on ' + str(sum(_rows(f) for f in calibration)) + ' samples' if calibration else ''})...")
    plan = quantize_graph(source, folder / INT8_FILE, method, example, calibration, calibration_method)
    log(f"int8: {plan['int8_mac_share']:.1%} of MACs; fp32 ops: {', '.join(f'{k} x{v}' for k, v in plan['fp32_ops'].items()) or 'none'}")
    int8 = OnnxModel(sidecar, folder, INT8_FILE)
    plan["validation"] = compare_on_split(loaded, fp32, int8, "val")
    plan["sizes"] = {"fp32_bytes": model_bytes(source), "int8_bytes": model_bytes(folder / INT8_FILE)}
    plan["sizes"]["ratio"] = plan["sizes"]["fp32_bytes"] / max(plan["sizes"]["int8_bytes"], 1)
    plan["model_file"] = INT8_FILE
    v = plan["validation"]
    log(f"int8 parity on validation: {v['metric']} fp32 {_fmt(v['fp32'])} -> int8 {_fmt(v['int8'])}, max |Δ| {v['max_abs_diff']:.4g}; size {plan['sizes']['ratio']:.2f}x smaller")
    return plan


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _rows(feeds: dict[str, np.ndarray]) -> int:
    return int(next(iter(feeds.values())).shape[0]) if feeds else 0


def _feeds(loader: Any, runtime: Any, samples: int) -> Iterator[dict[str, np.ndarray]]:
    seen = 0
    for batch in loader:
        if seen >= samples:
            return
        feeds = runtime.feeds(batch)
        seen += len(batch)
        yield feeds


def model_bytes(path: Path) -> int:
    """Bytes of an ONNX file and of the external-data files it references."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    path = Path(path)
    model = onnx.load(str(path), load_external_data=False)
    external = {entry.value for t in model.graph.initializer if uses_external_data(t) for entry in t.external_data if entry.key == "location"}
    return path.stat().st_size + sum((path.parent / name).stat().st_size for name in external)


def quantize_graph(source: Path, target: Path, method: str, example: dict[str, np.ndarray], calibration: list[dict[str, np.ndarray]], calibration_method: str = "minmax") -> dict[str, Any]:
    """Write the int8 graph of `source` to `target`; return what was quantised and the int8 share of MACs.

    Args:
        source: the fp32 ONNX graph.
        target: where the int8 graph goes.
        method: ``static`` or ``dynamic`` (see the module doc).
        example: one batch of feeds (to infer every node's shape for the MAC count).
        calibration: feeds for static calibration.
        calibration_method: ``minmax``, ``entropy`` or ``percentile``.
    """
    import onnx

    from mmapps.export.quantize_ops import dynamic_int8, node_macs, static_int8

    model = onnx.load(str(source))
    macs = node_macs(model, example)
    initializers = {t.name for t in model.graph.initializer}
    constant = _constant_outputs(model, initializers)
    convs = [n.name for n in model.graph.node if n.op_type in ("Conv",)]
    linear = [n.name for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1 and n.input[1] in constant]
    tables = [n.name for n in model.graph.node if n.op_type == "Gather" and n.input[0] in initializers and _is_table(model, n.input[0])]
    stage = source
    if method == "static" and convs:
        tmp = target.with_suffix(".qdq.tmp.onnx")
        static_int8(stage, tmp, calibration, convs, calibration_method)
        stage = tmp
    if linear or tables:
        dynamic_int8(stage, target, linear + tables)
    elif stage != target:
        stage.replace(target)
    if stage != source and stage != target and Path(stage).exists():
        Path(stage).unlink()
    if not Path(target).exists():  # nothing to quantise: the int8 file is the fp32 graph
        onnx.save(model, str(target))
    int8_nodes = set(linear) | (set(convs) if method == "static" else set())
    total = sum(macs.values())
    ops = {n.name: n.op_type for n in model.graph.node}
    fp32_ops = Counter(ops[name] for name in macs if name not in int8_nodes and macs[name] > 0)
    return {
        "method": method,
        "calibration": {"method": calibration_method, "samples": sum(_rows(f) for f in calibration)} if method == "static" else None,
        "int8_ops": dict(Counter(ops[n] for n in int8_nodes)) | ({"Gather (embedding tables, int8 storage)": len(tables)} if tables else {}),
        "fp32_ops": dict(fp32_ops),
        "int8_mac_share": sum(macs.get(n, 0) for n in int8_nodes) / total if total else 0.0,
        "macs_per_sample": total / max(_rows(example), 1),
        "fp32_nodes": sorted((name for name in macs if name not in int8_nodes and macs[name] > 0), key=lambda n: -macs[n])[:20],
    }


def _is_table(model: Any, name: str) -> bool:
    """A float embedding table large enough to matter (>= 64k values)."""
    import numpy as np

    tensor = next(t for t in model.graph.initializer if t.name == name)
    return tensor.data_type == 1 and len(tensor.dims) == 2 and int(np.prod(tensor.dims)) >= 65536


def _constant_outputs(model: Any, initializers: set[str]) -> set[str]:
    """Initializers and what Constant / Transpose / Cast / Reshape nodes make of them only (weights the exporter re-laid out)."""
    constant = set(initializers)
    for node in model.graph.node:
        if node.op_type == "Constant" or (node.op_type in ("Transpose", "Cast", "Reshape", "Identity") and all(i in constant or not i for i in node.input)):
            constant.update(node.output)
    return constant


def compare_on_split(loaded: Any, fp32: Any, int8: Any, split: str) -> dict[str, Any]:
    """Primary metric of both graphs on `split`, max |Δ| of the outputs and decisions flipped at the sidecar's thresholds."""
    from mmapps.export.scores import decisions, record_scores
    from mmapps.export.validation import _float, _records
    from mmapps.train.trainer import compute_metrics, primary_key

    domain, cfg = loaded.domain, loaded.cfg
    records: dict[str, dict[str, list]] = {"fp32": {}, "int8": {}}
    diff = 0.0
    for batch in loaded.loader(split):
        feeds = fp32.runtime.feeds(batch)
        a, b = fp32.run(feeds), int8.run(feeds)
        for name in a:
            if np.issubdtype(a[name].dtype, np.floating) and a[name].size:
                diff = max(diff, float(np.max(np.abs(a[name].astype(np.float64) - b[name].astype(np.float64)))))
        _records(domain, fp32.runtime.model_outputs(a, batch), batch, records["fp32"])
        _records(domain, int8.runtime.model_outputs(b, batch), batch, records["int8"])
    quick = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"bootstrap_resamples": 0})})
    key = primary_key(domain)
    metrics = {name: compute_metrics(domain, rec, quick, rec) for name, rec in records.items()}
    flipped = 0
    thresholds = getattr(fp32.sidecar, "thresholds", {}) or {}
    for task in domain.tasks:
        if task.name in thresholds:
            ref = decisions(task, record_scores(records["fp32"].get(task.name, [])), thresholds[task.name])
            got = decisions(task, record_scores(records["int8"].get(task.name, [])), thresholds[task.name])
            if ref is not None and got is not None:
                flipped += int((ref != got).sum())
    return {"split": split, "metric": key, "fp32": _float(metrics["fp32"].get(key)), "int8": _float(metrics["int8"].get(key)), "max_abs_diff": diff, "flipped_decisions": flipped}
