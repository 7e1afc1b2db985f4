"""Surveillance export (``Domain.export``): the clip graph for ``evaluate``/``predict`` and the step graph for ``watch``.

One export folder holds two graphs:

- ``model.onnx``, the clip graph: the core model on whole clips, every modality an input
  (``m`` (batch, time, ...), ``m_mask`` (batch, time), ``m_present`` (batch,)), all on one
  ``time`` axis (windows are aligned before the graph, as `model.WindowAlignedModel` does), output
  ``events`` (batch, time, classes) logits. Media decoding, log-mels and chat embeddings run
  before it (mmapps' dataset pipeline); ``evaluate --checkpoint DIR/model.onnx`` runs it.
- ``step.onnx``, the streaming step graph (`export_step`): one window plus the stream's state
  (ring buffer of ``data.options.max_context`` windows) -> the window's logits and the new state.
  ``watch --checkpoint DIR`` (or ``DIR/model.onnx``) runs it on onnxruntime. Its parity against the
  PyTorch step and against the clip model is checked at export on the tracing batch's clips and
  recorded in ``model.json`` (``preprocess.step.parity``); Triton gets it as a second model,
  ``triton/<domain>_step`` with ``sequence_batching`` and implicit state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmapps.data.sample import Batch, ModalityBatch
from mmapps.export.fusion_adapter import FusionExport
from mmapps.export.fusion_io import FusionRuntime
from mmapps.export.graph import FusionGraph
from mmapps.export.spec import TensorSpec

CLIP_RUNTIME = "mmapps_domains.surveillance.export:ClipRuntime"
TIME = "time"


def aligned(batch: Any, inputs: list[TensorSpec]) -> Any:
    """`batch` with every modality on the clips' window count T (zero-padded, masked); a modality absent
    from the whole batch becomes full-shape zeros with presence False (the graph has no size-0 axis)."""
    from mmapps_domains.surveillance.model import align_windows

    B = len(batch)
    T = max(len(m["window_starts"]) for m in batch.meta)
    specs = {s.modality: s for s in inputs if s.role == "data"}
    out = {}
    for m, spec in specs.items():
        mb = batch.inputs.get(m)
        if mb is None or mb.data is None:
            zeros = torch.zeros((B, T, *[int(a) for a in spec.shape[2:]]))
            mb = ModalityBatch(zeros, torch.zeros(B, dtype=torch.bool), torch.zeros(B, T, dtype=torch.bool))
        out[m] = align_windows(mb, T)
    return Batch(out, batch.targets, batch.sample_ids, batch.group_ids, batch.meta)


class ClipRuntime(FusionRuntime):
    """`GraphRuntime` of the clip graph: the core feeds after aligning windows across modalities."""

    def feeds(self, batch: Any) -> dict[str, np.ndarray]:
        return super().feeds(aligned(batch, self.inputs))


class SurveillanceExport(FusionExport):
    """`ExportAdapter` of the surveillance model (a `WindowAlignedModel` around the core `FusionModel`).

    Args:
        model: the eval-mode model with the checkpoint's weights.
        cfg: the run config (``data.options.max_context`` sizes the step graph's ring buffer).
        domain: the domain with the run's classes.
        example: a collated validation batch.
    """

    runtime = CLIP_RUNTIME

    def __init__(self, model: Any, cfg: Any, domain: Any, example: Any) -> None:
        core = getattr(model, "core", model)
        super().__init__(core, domain, example)
        self.inputs = [_on_time_axis(s) for s in self.inputs]
        self.module = FusionGraph(core, self.inputs, [o.name for o in self.outputs]).eval()
        self.cfg, self.example_batch, self.wrapped = cfg, example, model

    def preprocess(self, folder: Path) -> dict[str, Any]:
        from mmapps.errors import ConfigError

        values = super().preprocess(folder)
        try:
            values["step"] = self._export_step(Path(folder))
        except ConfigError as err:  # a model that cannot stream exactly (non-causal attention...): clip graph only
            values["step"] = None
            values["step_unavailable"] = str(err)
        return values

    def _export_step(self, folder: Path, opset: int = 18) -> dict[str, Any]:
        from mmapps_domains.surveillance.export_step import STEP_FILE, export_step_graph, sequence_batching, stream_parity
        from mmapps_domains.surveillance.options import data_options
        from mmapps_domains.surveillance.streaming import StreamStep

        from mmapps.export.parity import ATOL, RTOL, ParityError
        from mmapps.export.session import create_session
        from mmapps.export.triton import write_triton_repository

        max_context = data_options(self.cfg.data.options).max_context
        step = StreamStep(self.model, "events", max_context)
        shapes = {s.modality: tuple(int(a) for a in s.shape[2:]) for s in self.inputs if s.role == "data"}
        n_classes = int(self.outputs[0].shape[-1])
        inputs, outputs = export_step_graph(step, shapes, n_classes, folder / STEP_FILE, opset)
        batch = aligned(self.example_batch, self.inputs)
        with torch.no_grad():
            reference = self.wrapped(batch)["events"].float().numpy()  # (B, T, C)
        parity = stream_parity(step, create_session(folder / STEP_FILE), inputs, batch, reference)
        bound = ATOL + RTOL * float(np.abs(reference).max())
        if parity["max_abs_diff_onnx_vs_torch_step"] > bound or parity["max_abs_diff_torch_step_vs_clip"] > bound:
            raise ParityError(f"parity failed for the streaming step graph ({STEP_FILE}): {parity}, tolerance {bound:.3g}; nothing was written")
        name = f"{self.domain.name}_step"
        write_triton_repository(folder, name, _Specs(inputs, outputs), model_file=STEP_FILE, max_batch_size=32, configure=sequence_batching(inputs, outputs))
        return {"file": STEP_FILE, "max_context": max_context, "inputs": [s.to_json() for s in inputs], "outputs": [s.to_json() for s in outputs],
                "parity": parity, "triton_model": name, "opset": opset}


class _Specs:
    def __init__(self, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> None:
        self.inputs, self.outputs = inputs, outputs


def _on_time_axis(spec: TensorSpec) -> TensorSpec:
    """Every modality's element axis is the clip's window axis ``time`` (the fusion stacks modalities per window)."""
    shape = tuple(TIME if isinstance(a, str) and a.endswith("_elements") else a for a in spec.shape)
    return TensorSpec(**{**spec.to_json(), "shape": shape})


def make_adapter(model: Any, cfg: Any, domain: Any, example: Any) -> SurveillanceExport:
    """``Domain.export`` of the surveillance domain."""
    from mmapps_domains.surveillance.model import with_classes
    from mmapps_domains.surveillance.options import data_options

    return SurveillanceExport(model, cfg, with_classes(domain, data_options(cfg.data.options).classes), example)


def is_export(path: Path) -> bool:
    """True for an export folder, its ``model.json`` or an ``.onnx`` file (``watch`` runs it on onnxruntime)."""
    path = Path(path)
    return path.is_dir() or path.suffix in (".onnx", ".json")


def open_scorer(checkpoint: Path, threads: int | None = 1, max_context: int | None = None) -> tuple[Any, Any, float | None]:
    """(cfg, scorer, the run's alarm threshold or None) for ``watch``: a PyTorch checkpoint or an export folder.

    An export's files are verified (SHA-256) before use; its step graph's ring-buffer capacity is
    fixed at export (``max_context`` must then be None or equal to it).
    """
    from mmapps_domains.surveillance.options import data_options

    from mmapps.errors import ConfigError

    if not is_export(checkpoint):
        from mmapps_domains.surveillance.streaming import StreamingScorer
        from mmapps_domains.surveillance.watch import default_threshold, load_trained

        cfg, _, model = load_trained(checkpoint)
        return cfg, StreamingScorer(model, max_context=max_context or data_options(cfg.data.options).max_context), default_threshold(Path(checkpoint), None)
    import yaml

    from mmapps_domains.surveillance.export_step import OnnxStreamingScorer

    from mmapps.config import validate_config
    from mmapps.export.session import create_session
    from mmapps.export.sidecar import read_sidecar

    sidecar, folder = read_sidecar(Path(checkpoint))
    if sidecar.domain != "surveillance":
        raise ConfigError(f"watch --checkpoint {checkpoint}: this export is of the {sidecar.domain} domain; watch runs a surveillance export (`mmapps surveillance export`)")
    if not sidecar.preprocess.get("step"):
        reason = sidecar.preprocess.get("step_unavailable", "it was written without one")
        raise ConfigError(f"watch --checkpoint {checkpoint}: this export has no streaming step graph ({reason}); watch the checkpoint itself or export a streamable model")
    step = sidecar.preprocess["step"]
    if max_context is not None and max_context != step["max_context"]:
        raise ConfigError(f"watch --max-context {max_context}: the exported step graph's ring buffer holds {step['max_context']} windows (fixed at export); "
                          "re-export with --set data.options.max_context=N or omit --max-context")
    cfg = validate_config(yaml.safe_load(sidecar.config))
    scorer = OnnxStreamingScorer(create_session(folder / step["file"], threads), [TensorSpec.from_json(s) for s in step["inputs"]])
    threshold = sidecar.extra.get("test_metrics", {}).get("alarm/threshold")
    return cfg, scorer, float(threshold) if isinstance(threshold, (int, float)) and 0 < threshold < 1 else None
