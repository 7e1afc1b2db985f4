"""Half-precision graphs for GPUs: ``export --precision fp16|bf16`` adds ``model.fp16.onnx`` / ``model.bf16.onnx``.

- ``fp16``: the fp32 graph converted by ``onnxruntime.transformers.float16`` (weights and compute in
  float16; inputs and outputs stay float32, Cast nodes at the edges; ops without float16 kernels
  stay fp32 behind casts), so mmapps' runtime feeds it unchanged.
- ``bf16``: the PyTorch model cast to bfloat16 inside a wrapper that casts float inputs to bf16 and
  the outputs back to fp32, exported with ``torch.onnx.export(dynamo=True)`` at opset >= 22 (the
  first with bfloat16 Conv), without onnxscript's rewrites (its BatchNorm fusion leaves fp32 biases).

Parity: the half graph against the PyTorch fp32 model on the validation split at the looser
tolerance `TOLERANCE` (``|Δ| <= atol + rtol·|ref|`` on the logits), the decisions flipped at the
validation thresholds and the primary metric of both; a failure is a `ParityError` (exit 9). Where
onnxruntime's CPU provider has no kernel for the graph's types (bfloat16 Conv/MatMul today), the
graph is checked (``onnx.checker``, every float weight in the half type, float32 inputs and
outputs) and the PyTorch bf16 model's parity is reported instead, with the reason; run it on the
CUDA provider (or TensorRT) where it is meant to run.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mmapps.errors import CheckpointError
from mmapps.export.parity import compare_batches

HALF_FILES = {"fp16": "model.fp16.onnx", "bf16": "model.bf16.onnx"}
TOLERANCE = {"fp16": (1e-2, 1e-2), "bf16": (5e-2, 5e-2)}  # (atol, rtol): 10-bit and 7-bit mantissas
BF16_MIN_OPSET = 22
_DTYPE = {"fp16": torch.float16, "bf16": torch.bfloat16}
_ONNX_TYPE = {"fp16": 10, "bf16": 16}  # onnx.TensorProto.FLOAT16 / BFLOAT16


class HalfPrecisionModule(nn.Module):
    """`module` in `dtype`: float inputs cast in, float outputs cast back to float32 (fp32 I/O, half inside)."""

    def __init__(self, module: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.inner, self.dtype = copy.deepcopy(module).to(dtype), dtype

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        cast = [x.to(self.dtype) if x.is_floating_point() else x for x in inputs]
        out = self.inner(*cast)
        out = out if isinstance(out, (tuple, list)) else (out,)
        return tuple(o.float() if o.is_floating_point() else o for o in out)


def export_half(folder: Path, sidecar: Any, loaded: Any, precision: str, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Write the `precision` graph into `folder`, check it against PyTorch, return the sidecar's ``half`` section."""
    import onnx

    from mmapps.domain import resolve
    from mmapps.export.onnx_write import write_onnx

    folder, target = Path(folder), Path(folder) / HALF_FILES[precision]
    log(f"{precision}: writing {target.name}...")
    if precision == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = _topological(convert_float_to_float16(onnx.load(str(folder / sidecar.model_file)), keep_io_types=True))
        onnx.save(model, str(target), save_as_external_data=model.ByteSize() > (1 << 30))
        opset = sidecar.opset
    else:
        opset = max(sidecar.opset, BF16_MIN_OPSET)
        runtime = resolve(sidecar.runtime)(sidecar.preprocess, folder)
        write_onnx(loaded.adapter, runtime.feeds(loaded.example), target, opset, HalfPrecisionModule(loaded.adapter.module, _DTYPE[precision]), optimize=False)
    types = check_half_graph(target, precision)
    runtime = resolve(sidecar.runtime)(sidecar.preprocess, folder)
    atol, rtol = TOLERANCE[precision]
    section: dict[str, Any] = {"precision": precision, "model_file": target.name, "opset": opset, "tolerance": {"atol": atol, "rtol": rtol}, "graph": types}
    try:
        from mmapps.export.session import OnnxModel

        graph = OnnxModel(sidecar, folder, target.name)
        run = lambda batch: graph.run(graph.runtime.feeds(batch))
        section["runs_on"] = "onnxruntime CPUExecutionProvider"
    except CheckpointError as err:  # no CPU kernels for the half type: PyTorch's half model stands in
        half = HalfPrecisionModule(loaded.adapter.module, _DTYPE[precision]).eval()
        section["runs_on"] = f"PyTorch {precision} (onnxruntime CPU cannot run it: {str(err).splitlines()[0][:200]}); run the graph on the CUDA or TensorRT provider"
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
