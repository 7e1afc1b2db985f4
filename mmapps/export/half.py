"""Half-precision graphs for GPUs: ``export --precision fp16`` adds ``model.fp16.onnx``.

The fp32 graph converted by ``onnxruntime.transformers.float16``: weights and compute in float16,
Cast nodes at the edges so inputs and outputs stay float32 (mmapps' runtime feeds it unchanged),
ops without float16 kernels kept fp32 behind casts; the nodes are re-sorted (the converter appends
its input casts after their users, which ``onnx.checker`` refuses).

Parity: the fp16 graph against the PyTorch fp32 model on the validation split at the looser
tolerance `TOLERANCE` (``|Δ| <= atol + rtol·|ref|`` on the logits), the decisions flipped at the
validation thresholds and the primary metric of both; a failure is a `ParityError` (exit 9). Where
onnxruntime's CPU provider cannot load the graph (a float16 kernel it lacks), the graph is checked
(``onnx.checker``, every large weight float16, float32 inputs and outputs) and PyTorch's float16
autocast of the model is measured instead, with the reason (``runs_on``).

bf16 is refused: the fusion graph casts to float32 inside (``mmapps.export.graph``), so a bfloat16
trace mixes types, and onnxruntime's CPU provider has no bfloat16 Conv to check one; TensorRT builds
bf16 engines from ``model.onnx`` itself (``--bf16``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mmapps.errors import CheckpointError
from mmapps.export.parity import compare_batches

HALF_FILES = {"fp16": "model.fp16.onnx"}
TOLERANCE = {"fp16": (1e-2, 1e-2)}  # (atol, rtol): float16's 10-bit mantissa, accumulated over the layers
_DTYPE = {"fp16": torch.float16}
_ONNX_TYPE = {"fp16": 10}  # onnx.TensorProto.FLOAT16


class AutocastModule(nn.Module):
    """`module` under CPU autocast to `dtype` (the PyTorch stand-in when onnxruntime cannot run the half graph)."""

    def __init__(self, module: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.inner, self.dtype = module, dtype

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.autocast("cpu", dtype=self.dtype):
            out = self.inner(*inputs)
        out = out if isinstance(out, (tuple, list)) else (out,)
        return tuple(o.float() if o.is_floating_point() else o for o in out)


def export_half(folder: Path, sidecar: Any, loaded: Any, precision: str, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Write the `precision` graph into `folder`, check it against PyTorch, return the sidecar's ``half`` section."""
    import onnx

    from mmapps.domain import resolve

    folder, target = Path(folder), Path(folder) / HALF_FILES[precision]
    log(f"{precision}: writing {target.name}...")
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = _topological(convert_float_to_float16(onnx.load(str(folder / sidecar.model_file)), keep_io_types=True))
    onnx.save(model, str(target), save_as_external_data=model.ByteSize() > (1 << 30))
    opset = sidecar.opset
    types = check_half_graph(target, precision)
    runtime = resolve(sidecar.runtime)(sidecar.preprocess, folder)
    atol, rtol = TOLERANCE[precision]
    section: dict[str, Any] = {"precision": precision, "model_file": target.name, "opset": opset, "tolerance": {"atol": atol, "rtol": rtol}, "graph": types}
    try:
        from mmapps.export.session import OnnxModel

        graph = OnnxModel(sidecar, folder, target.name)
        run = lambda batch: graph.run(graph.runtime.feeds(batch))
        section["runs_on"] = "onnxruntime CPUExecutionProvider"
    except CheckpointError as err:  # a float16 kernel the CPU provider lacks: PyTorch's autocast stands in
        half = AutocastModule(loaded.adapter.module, _DTYPE[precision]).eval()
        section["runs_on"] = f"PyTorch {precision} autocast (onnxruntime CPU cannot run the graph: {str(err).splitlines()[0][:300]}); run the graph on the CUDA or TensorRT provider"
        run = lambda batch: _torch_outputs(half, loaded, runtime, batch)
    report = half_parity(loaded, runtime, sidecar.thresholds, run, atol, rtol)
    section |= {"parity": report.to_json(), "parity_line": f"max |d| {report.max_abs_diff:.3g} at |d| <= {atol:g} + {rtol:g}*|ref|, {report.flipped} decisions flipped, on {section['runs_on'].split(' (')[0]}"}
    log(f"{precision} parity on validation ({section['runs_on']}): " + "; ".join(report.lines()[1:]))
    report.raise_if_failed()
    return section


def _topological(model: Any) -> Any:
    """The graph's nodes in dependency order (the converter appends its input Casts after their users)."""
    graph = model.graph
    ready = {v.name for v in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        rest = [n for n in pending if not all(i in ready for i in n.input)]
        done = [n for n in pending if all(i in ready for i in n.input)]
        if not done:  # outer-scope names of subgraphs, or a cycle: keep the remaining order
            ordered += rest
            break
        for node in done:
            ordered.append(node)
            ready.update(node.output)
        pending = rest
    copies = [type(n)() for n in ordered]
    for copy_, node in zip(copies, ordered):
        copy_.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)
    return model


def check_half_graph(path: Path, precision: str) -> dict[str, Any]:
    """``onnx.checker`` on the graph; the element types of its float weights; inputs and outputs float32 (not half).

    Raises:
        ParityError: a float weight left in fp32 beyond small constants, or a half-precision input or output.
    """
    import onnx

    from mmapps.export.parity import ParityError

    onnx.checker.check_model(str(path))
    model = onnx.load(str(path), load_external_data=False)
    weights = Counter(onnx.TensorProto.DataType.Name(t.data_type) for t in model.graph.initializer if t.data_type in (1, 10, 16))
    big_fp32 = [t.name for t in model.graph.initializer if t.data_type == 1 and int(np.prod(t.dims)) > 4096]
    half_io = [v.name for v in (*model.graph.input, *model.graph.output) if v.type.tensor_type.elem_type == _ONNX_TYPE[precision]]
    if big_fp32 or half_io:
        raise ParityError(f"{precision} export {path.name}: weights left in fp32 {big_fp32[:5]} / inputs or outputs in {precision} {half_io[:5]}; expected {precision} weights with float32 inputs and outputs")
    return {"weights_by_type": dict(weights), "io": "float32"}


@torch.no_grad()
def _torch_outputs(half: nn.Module, loaded: Any, runtime: Any, batch: Any) -> dict[str, np.ndarray]:
    feeds = runtime.feeds(batch)
    outs = half(*(torch.from_numpy(np.ascontiguousarray(feeds[s.name])) for s in loaded.adapter.inputs))
    return {o.name: v.numpy() for o, v in zip(loaded.adapter.outputs, outs)}


def half_parity(loaded: Any, runtime: Any, thresholds: dict[str, dict[str, float]], run: Callable[[Any], dict[str, np.ndarray]], atol: float, rtol: float) -> Any:
    """The half graph (`run`: batch -> named outputs) against the PyTorch fp32 model on the validation split:
    `ParityReport` with the decisions flipped at `thresholds` and the primary metric of both."""
    from mmapps.export.drop import paired_drop
    from mmapps.export.scores import decisions, record_scores
    from mmapps.export.validation import _records

    pairs, records = [], {"ref": {}, "got": {}}
    with torch.no_grad():
        for batch in loaded.loader("val"):
            got, ref = run(batch), loaded.adapter.reference(loaded.model, batch)
            pairs.append((got, ref, list(batch.sample_ids)))
            _records(loaded.domain, runtime.model_outputs(ref, batch), batch, records["ref"])
            _records(loaded.domain, runtime.model_outputs(got, batch), batch, records["got"])
    report = compare_batches(pairs, "val", atol, rtol)
    for task in loaded.domain.tasks:
        output = next((o for o in loaded.adapter.outputs if o.task == task.name), None)
        if task.name not in thresholds or output is None or output.name not in report.outputs:
            continue
        a = decisions(task, record_scores(records["ref"].get(task.name, [])), thresholds[task.name])
        b = decisions(task, record_scores(records["got"].get(task.name, [])), thresholds[task.name])
        if a is not None and b is not None:
            report.outputs[output.name].flipped, report.outputs[output.name].decisions = int((a != b).sum()), int(a.size)
    drop = paired_drop(loaded.domain, loaded.cfg, records["ref"], records["got"], 0)
    report.metric, report.metric_torch, report.metric_onnx = drop["metric"], _finite(drop["reference"]), _finite(drop["value"])
    return report


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float, np.floating)) and np.isfinite(value) else None
