"""int8 quantisation of an exported graph with ``onnxruntime.quantization``, and its report.

Contract (called by `mmapps.export.quantize_call` from ``export --quantize``):
``quantize_export(folder, sidecar, loaded, method, calibration_samples, log, calibration_method="minmax", max_drop=None) -> dict``
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
batch), the op types left in fp32 and why (``fp32_reasons``), the file sizes (external data
included), and the validation split's primary metric of the fp32 and int8 graphs with the
paired-bootstrap 95% CI of the drop, max |Δ| and flipped decisions. With `max_drop` set and the CI's
upper bound above it, the per-layer sensitivity search (`mmapps.export.sensitivity`) keeps the most
sensitive op groups fp32 until the goal is met; the report then holds its table (``sensitivity``).
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


def quantize_export(folder: Path, sidecar: Any, loaded: Any, method: str, calibration_samples: int, log: Callable[[str], None] = print, calibration_method: str = "minmax", max_drop: float | None = None) -> dict[str, Any]:
    """Quantise ``folder/<sidecar.model_file>`` into ``folder/model.int8.onnx``; return the report (see the module doc).

    Args:
        max_drop: the accuracy goal: the upper bound of the paired-bootstrap 95% CI of the validation
            primary-metric drop; when exceeded, the per-layer sensitivity search keeps the most
            sensitive op groups fp32 (`mmapps.export.sensitivity`). None: quantise everything, no search.

    Raises:
        ConfigError: an unknown method or calibration method; ``static`` without calibration samples.
    """
    import tempfile

    from mmapps.export.quant_eval import SplitProbe, open_candidate
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
        if calibration_method != "minmax":
            calibration = uniform_feeds(calibration, sidecar.inputs)
    probe = SplitProbe.run(loaded, fp32, "val")
    example = probe.feeds(2)[0]
    log(f"quantising {source.name} ({method}{', ' + calibration_method + ' calibration on ' + str(sum(_rows(f) for f in calibration)) + ' samples' if calibration else ''})...")
    target = folder / INT8_FILE
    with tempfile.TemporaryDirectory(prefix="mmapps-calibration-") as tmp:
        cache = Path(tmp) / "ranges.json"
        plan = quantize_graph(source, target, method, example, calibration, calibration_method, cache=cache)
        macs = plan.pop("_macs")
        quantize = lambda to, exclude: _without_macs(quantize_graph(source, to, method, example, calibration, calibration_method, exclude, cache, macs))
        plan["validation"] = probe.compare(open_candidate(sidecar, folder, INT8_FILE))
        high = plan["validation"]["drop_ci_high"]
        if max_drop is not None and high is not None and high > max_drop:
            plan = _sensitivity(plan, quantize, target, probe, macs, max_drop, sidecar, folder, log)
    plan["goal"] = {"max_drop_ci_high": max_drop, "met": None if max_drop is None or plan["validation"]["drop_ci_high"] is None else plan["validation"]["drop_ci_high"] <= max_drop}
    log(f"int8: {plan['int8_mac_share']:.1%} of MACs; fp32 ops: {', '.join(f'{k} x{v}' for k, v in plan['fp32_ops'].items()) or 'none'}")
    plan["sizes"] = {"fp32_bytes": model_bytes(source), "int8_bytes": model_bytes(target)}
    plan["sizes"]["ratio"] = plan["sizes"]["fp32_bytes"] / max(plan["sizes"]["int8_bytes"], 1)
    plan["model_file"] = INT8_FILE
    for key in ("node_ops", "int8_nodes"):
        plan.pop(key, None)
    v = plan["validation"]
    log(f"int8 on validation: {v['metric']} fp32 {_fmt(v['fp32'])} -> int8 {_fmt(v['int8'])} (drop {_fmt(v['drop'])}, 95% CI upper bound {_fmt(v['drop_ci_high'])}), "
        f"max |Δ| {v['max_abs_diff']:.4g}, {v['flipped_decisions']} decisions flipped; size {plan['sizes']['ratio']:.2f}x smaller")
    return plan


def _sensitivity(plan: dict[str, Any], quantize: Callable[..., dict[str, Any]], target: Path, probe: Any, macs: dict[str, int], goal: float, sidecar: Any, folder: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """The per-layer sensitivity search (`mmapps.export.sensitivity`) when the first int8 graph misses `goal`."""
    import onnx

    from mmapps.export.quant_eval import open_candidate
    from mmapps.export.sensitivity import (
        layer_sensitivity,
        node_groups,
        search_exclusions,
    )

    log(f"int8 misses the accuracy goal (drop CI upper bound {plan['validation']['drop_ci_high']:.4f} > {goal:g}): per-layer sensitivity...")
    groups = node_groups(onnx.load(str(Path(folder) / sidecar.model_file), load_external_data=False), plan["int8_nodes"])
    rows = layer_sensitivity(quantize, groups, probe, macs, log)
    found = search_exclusions(quantize, target, rows, lambda: probe.compare(open_candidate(sidecar, folder, INT8_FILE)), goal, log)
    first = {k: plan["validation"][k] for k in ("drop", "drop_ci_high", "int8")} | {"int8_mac_share": plan["int8_mac_share"]}
    if found["plan"] is None:
        quantize(target, frozenset())  # no step within the MAC cap: the all-int8 graph stays
        chosen, validation = plan, plan["validation"]
    else:
        chosen, validation = found["plan"], found["validation"]
    chosen["validation"] = validation
    excluded = set(found["excluded_groups"]) if found["plan"] is not None else set()
    chosen["sensitivity"] = {
        "probe_samples": min(sum(len(b) for b, _, _ in probe.batches), 64), "score": "relative output error ||Δ||/||fp32|| with only that group int8",
        "all_int8": first, "table": [r | {"kept_fp32": r["group"] in excluded} for r in rows], "steps": found["steps"], "goal_met": found["goal_met"],
    }
    chosen["fp32_reasons"] = chosen.get("fp32_reasons", {}) | {g: "kept fp32 by the sensitivity search (largest output error when quantised alone)" for g in excluded}
    return chosen


def uniform_feeds(feeds: list[dict[str, np.ndarray]], inputs: list[Any]) -> list[dict[str, np.ndarray]]:
    """One-sample feeds of one shape: the histogram calibrators (entropy, percentile) stack every call's
    activations into one array, so ragged axes (images per study, text length, pillars) are zero-padded to
    their largest size (zeros are padding: masks and presence are False there) and the batch is split."""
    batched = {s.name for s in inputs if s.batched}
    widest: dict[str, list[int]] = {}
    for feed in feeds:
        for name, value in feed.items():
            top = widest.setdefault(name, list(value.shape))
            widest[name] = [max(a, b) for a, b in zip(top, value.shape)]
    out = []
    for feed in feeds:
        padded = {}
        for name, value in feed.items():
            start = 1 if name in batched else 0
            pad = [(0, 0)] * start + [(0, w - n) for w, n in zip(widest[name][start:], value.shape[start:])]
            padded[name] = np.pad(value, pad) if any(p[1] for p in pad) else value
        rows = _rows({k: v for k, v in padded.items() if k in batched}) if batched & set(padded) else 1
        out += [{k: (v[i : i + 1] if k in batched else v) for k, v in padded.items()} for i in range(rows)]
    return out


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


def _without_macs(plan: dict[str, Any]) -> dict[str, Any]:
    plan.pop("_macs", None)
    return plan


def quantize_graph(
    source: Path, target: Path, method: str, example: dict[str, np.ndarray], calibration: list[dict[str, np.ndarray]], calibration_method: str = "minmax",
    exclude: frozenset[str] = frozenset(), cache: Path | None = None, macs: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Write the int8 graph of `source` to `target`; return what was quantised and the int8 share of MACs.

    Args:
        source: the fp32 ONNX graph.
        target: where the int8 graph goes.
        method: ``static`` or ``dynamic`` (see the module doc).
        example: one batch of feeds (to infer every node's shape for the MAC count).
        calibration: feeds for static calibration.
        calibration_method: ``minmax``, ``entropy`` or ``percentile``.
        exclude: quantisable node names to leave fp32 (the sensitivity search's choice).
        cache: a JSON file of calibrated activation ranges: written by the first call, read by the next
            (the sensitivity search calibrates once).
        macs: node -> MACs from an earlier call (returned under ``_macs``), to skip the shape pass.
    """
    import onnx

    from mmapps.export.quantize_ops import dynamic_int8, node_macs, quantized_sources, static_int8

    model = onnx.load(str(source))
    macs = macs if macs is not None else node_macs(model, example)
    initializers = {t.name for t in model.graph.initializer}
    constant = _constant_outputs(model, initializers)
    convs = [n.name for n in model.graph.node if n.op_type in ("Conv",) and n.name not in exclude]
    linear = [n.name for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1 and n.input[1] in constant and n.name not in exclude]
    tables = [n.name for n in model.graph.node if n.op_type == "Gather" and n.input[0] in initializers and _is_table(model, n.input[0]) and n.name not in exclude]
    Path(target).unlink(missing_ok=True)
    stage = source
    if method == "static" and convs:
        tmp = Path(target).with_suffix(".qdq.tmp.onnx")
        static_int8(stage, tmp, calibration, convs, calibration_method, cache)
        stage = tmp
    if linear or tables:
        dynamic_int8(stage, target, linear + tables)
    elif stage != source:
        Path(stage).replace(target)
    if stage != source and Path(stage).exists() and Path(stage) != Path(target):
        Path(stage).unlink()
    if not Path(target).exists():  # nothing to quantise: the int8 file is the fp32 graph
        onnx.save(model, str(target))
    int8_nodes = quantized_sources(target, convs if method == "static" else [], linear)
    total = sum(macs.values())
    ops = {n.name: n.op_type for n in model.graph.node}
    fp32_nodes = [name for name in macs if name not in int8_nodes and macs[name] > 0]
    reasons: dict[str, str] = {}
    for name in fp32_nodes:
        if name in exclude:
            continue
        reasons.setdefault(ops[name], "")
    why = {
        "MatMul": "products of two activations (Q·Kᵀ, probabilities·V): no constant weight to quantise, and softmax's inputs stay exact",
        "Conv": "dynamic int8 Conv (ConvInteger with per-call ranges) is slower than fp32 on CPU: convolutions are int8 only with --quantize static",
        "Gemm": "no constant weight",
    }
    return {
        "method": method,
        "calibration": {"method": calibration_method, "samples": sum(_rows(f) for f in calibration), "per_channel_weights": True} if method == "static" else None,
        "int8_ops": dict(Counter(ops[n] for n in int8_nodes)) | ({"Gather (embedding tables, int8 storage)": len(tables)} if tables else {}),
        "fp32_ops": dict(Counter(ops[name] for name in fp32_nodes)),
        "fp32_reasons": {op: why.get(op, "not a quantisable pattern") for op in reasons},
        "int8_mac_share": sum(macs.get(n, 0) for n in int8_nodes) / total if total else 0.0,
        "macs_per_sample": total / max(_rows(example), 1),
        "fp32_nodes": sorted(fp32_nodes, key=lambda n: -macs[n])[:20],
        "excluded_nodes": sorted(exclude),
        "int8_nodes": sorted(int8_nodes | set(tables)),
        "node_ops": ops,
        "_macs": macs,
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
