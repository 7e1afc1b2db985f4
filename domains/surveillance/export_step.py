"""The streaming step graph: one window of B streams + their state -> scores + the new state (``watch`` on onnxruntime).

`StepGraph` is `streaming.StreamStep` with flat tensor inputs, so the exported graph and ``watch``'s
PyTorch path are one module. Inputs, per modality ``m`` of the model: ``m`` float32 (batch, 1, ...)
the window's tensor (zeros where absent) and ``m_present`` bool (batch,); then the state, inputs
``state_<name>`` and outputs ``state_<name>_out`` (see `streaming` for the layout: step index,
ring-buffered keys/values, keep mask, key times, the temporal head's past inputs). Output
``events`` float32 (batch, classes): the window's logits. All-zero state is a new stream, which
is also what Triton's implicit state starts from (``initial_state`` with ``zero_data``).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mmapps.data.sample import ModalityBatch
from mmapps.export.spec import BATCH_AXIS, TensorSpec

from mmapps_domains.surveillance.streaming import StreamStep

STEP_FILE = "step.onnx"


class StepGraph(nn.Module):
    """`StreamStep` with flat inputs (`step_inputs` order) and flat outputs (`step_outputs` order)."""

    def __init__(self, step: StreamStep) -> None:
        super().__init__()
        self.step = step
        self.state_names = list(step.state_shapes())

    def forward(self, *values: Tensor) -> tuple[Tensor, ...]:
        mods = self.step.modalities
        windows = {}
        for i, m in enumerate(mods):
            data, present = values[2 * i], values[2 * i + 1]
            windows[m] = ModalityBatch(data, present, present.unsqueeze(1))  # one window: its mask is its presence
        state = dict(zip(self.state_names, values[2 * len(mods):]))
        logits, new_state = self.step(windows, state)
        return (logits, *(new_state[n] for n in self.state_names))


def step_inputs(step: StreamStep, window_shapes: dict[str, tuple[int, ...]]) -> list[TensorSpec]:
    """Window inputs (per modality: data (batch, 1, ...) and presence) then the state inputs."""
    specs = []
    for m in step.modalities:
        specs += [TensorSpec(m, "float32", (BATCH_AXIS, 1, *window_shapes[m]), m, "data", description=f"one window of {m}; zeros where absent"),
                  TensorSpec(f"{m}_present", "bool", (BATCH_AXIS,), m, "present", description=f"False where the window has no {m}")]
    for name, (dtype, shape) in step.state_shapes().items():
        specs.append(TensorSpec(f"state_{name}", dtype, (BATCH_AXIS, *shape), None, "state", description=f"streaming state {name} (zeros: a new stream)"))
    return specs


def step_outputs(step: StreamStep, n_classes: int) -> list[TensorSpec]:
    specs = [TensorSpec(step.task, "float32", (BATCH_AXIS, n_classes), role="output", task=step.task, description="the window's logits")]
    for name, (dtype, shape) in step.state_shapes().items():
        specs.append(TensorSpec(f"state_{name}_out", dtype, (BATCH_AXIS, *shape), None, "state", description=f"next streaming state {name}"))
    return specs


def zero_state(specs: list[TensorSpec], batch_size: int) -> dict[str, np.ndarray]:
    """Numpy zeros for every ``state`` input: ``batch_size`` new streams."""
    return {s.name: np.zeros((batch_size, *s.shape[1:]), s.np_dtype) for s in specs if s.role == "state"}


def window_feeds(batch: Any, inputs: list[TensorSpec], t: int) -> dict[str, np.ndarray]:
    """Window ``t`` of every clip of a collated (padded) `Batch` as step-graph window inputs."""
    feeds = {}
    B = len(batch)
    for spec in inputs:
        if spec.role == "data":
            mb = batch.inputs.get(spec.modality)
            if mb is None or mb.data is None or mb.data.shape[1] <= t:
                feeds[spec.name] = np.zeros((B, *spec.shape[1:]), np.float32)
                feeds[f"{spec.modality}_present"] = np.zeros(B, bool)
                continue
            keep = mb.present & (mb.mask[:, t] if mb.mask is not None else True)
            feeds[spec.name] = mb.data[:, t : t + 1].float().numpy()
            feeds[f"{spec.modality}_present"] = keep.numpy().astype(bool)
    return feeds


def export_step_graph(step: StreamStep, window_shapes: dict[str, tuple[int, ...]], n_classes: int, path: Path, opset: int) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Trace `StepGraph` with ``torch.onnx.export(dynamo=True)`` (dynamic batch of streams) to `path`."""
    from mmapps.export.onnx_write import write_onnx

    inputs, outputs = step_inputs(step, window_shapes), step_outputs(step, n_classes)
    rng = np.random.default_rng(0)
    feeds = {s.name: (rng.standard_normal((2, *s.shape[1:])).astype(np.float32) if s.role == "data" else np.ones(2, bool)) for s in inputs if s.role != "state"}
    feeds |= zero_state(inputs, 2)
    adapter = SimpleNamespace(inputs=inputs, outputs=outputs, module=StepGraph(step).eval())
    write_onnx(adapter, feeds, path, opset)
    return inputs, outputs


def sequence_batching(inputs: list[TensorSpec], outputs: list[TensorSpec]) -> Any:
    """``configure`` for `mmapps.export.triton.triton_config`: sequence batching with implicit state.

    The state tensors leave the model's declared inputs and outputs: Triton keeps them per
    sequence (``state`` entries, zero-initialised at a sequence's START), so a client sends one
    window per request with its sequence id and gets that window's scores.
    """
    from mmapps.export.triton import TRITON_TYPES

    def configure(config: Any) -> None:
        from tritonclient.grpc import model_config_pb2 as mc

        state = {s.name for s in (*inputs, *outputs) if s.role == "state"}
        for field in (config.input, config.output):
            kept = [e for e in field if e.name not in state]
            del field[:]
            field.extend(kept)
        config.ClearField("dynamic_batching")
        sb = config.sequence_batching
        sb.max_sequence_idle_microseconds = 60_000_000
        sb.oldest.max_candidate_sequences = 64
        sb.oldest.preferred_batch_size.append(8)
        sb.oldest.max_queue_delay_microseconds = 2000
        for spec in inputs:
            if spec.role != "state":
                continue
            dims = [int(a) for a in spec.shape[1:]] or [1]
            entry = sb.state.add(input_name=spec.name, output_name=f"{spec.name}_out", data_type=mc.DataType.Value(TRITON_TYPES[spec.dtype]), dims=dims)
            entry.initial_state.add(data_type=entry.data_type, dims=dims, zero_data=True, name="new_stream")

    return configure


class OnnxStreamingScorer:
    """``watch``'s scorer on onnxruntime: the step graph with the state kept between calls (one stream).

    Args:
        session: an onnxruntime session of ``step.onnx``.
        inputs: the step graph's inputs (sidecar ``preprocess.step.inputs``).
        task: the logits output name.
    """

    def __init__(self, session: Any, inputs: list[TensorSpec], task: str = "events") -> None:
        self.session, self.inputs, self.task = session, inputs, task
        self.modalities = [s.modality for s in inputs if s.role == "data"]
        self.state = zero_state(inputs, 1)
        self.output_names = [o.name for o in session.get_outputs()]
        self.t = 0

    def step(self, window_batch: Any) -> Tensor:
        """Logits (C,) of the next window (a collated one-clip, one-window `Batch`), as `StreamingScorer.step`."""
        feeds = window_feeds(window_batch, self.inputs, 0) | self.state
        values = dict(zip(self.output_names, self.session.run(self.output_names, feeds)))
        self.state = {name: values[f"{name}_out"] for name in self.state}
        self.t += 1
        return torch.from_numpy(values[self.task][0].astype(np.float32))


@torch.no_grad()
def stream_parity(step: StreamStep, session: Any, inputs: list[TensorSpec], batch: Any, reference: np.ndarray) -> dict[str, float]:
    """Stream every clip of `batch` window by window (all clips as one batch of streams) through the
    PyTorch step and the ONNX step graph; max |Δ| between them and against the whole-clip logits `reference` (B, T, C)."""
    B, T = reference.shape[:2]
    state_t = step.initial_state(B)
    state_o = zero_state(inputs, B)
    names = [o.name for o in session.get_outputs()]
    valid = np.stack([np.arange(T) < len(m["window_starts"]) for m in batch.meta])  # (B, T)
    d_onnx = d_clip = 0.0
    for t in range(T):
        feeds = window_feeds(batch, inputs, t)
        windows = {m: ModalityBatch(torch.from_numpy(feeds[m]), torch.from_numpy(feeds[f"{m}_present"]), torch.from_numpy(feeds[f"{m}_present"]).unsqueeze(1)) for m in step.modalities}
        logits, state_t = step(windows, state_t)
        out = dict(zip(names, session.run(names, feeds | state_o)))
        state_o = {n: out[f"{n}_out"] for n in state_o}
        rows = valid[:, t]
        d_onnx = max(d_onnx, float(np.abs(out[step.task][rows] - logits.numpy()[rows]).max(initial=0.0)))
        d_clip = max(d_clip, float(np.abs(logits.numpy()[rows] - reference[rows, t]).max(initial=0.0)))
    return {"clips": B, "windows": int(valid.sum()), "max_abs_diff_onnx_vs_torch_step": d_onnx, "max_abs_diff_torch_step_vs_clip": d_clip}
