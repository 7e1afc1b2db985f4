"""An exported model on onnxruntime, callable like the PyTorch model on an mmapps `Batch`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmapps.domain import resolve
from mmapps.errors import CheckpointError
from mmapps.export.sidecar import Sidecar, read_sidecar


def create_session(model_path: Path, threads: int | None = None, providers: Sequence[str] = ("CPUExecutionProvider",)) -> Any:
    """An ``onnxruntime.InferenceSession`` with full graph optimisation; `threads` = intra-op threads (None: onnxruntime's default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(model_path), sess_options=options, providers=list(providers))
    except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph types
        raise CheckpointError(f"export {model_path}: onnxruntime cannot load it ({type(err).__name__}: {str(err).splitlines()[0]})") from None


class OnnxModel:
    """``model(batch) -> {task: tensor}`` on onnxruntime, through the sidecar's `GraphRuntime`.

    It stands in for the ``nn.Module`` in `mmapps.evaluation.records.predict_records` (``eval``,
    ``to`` and ``training`` are accepted and do nothing), so mmapps' own pre- and post-processing,
    metrics and prediction writers run unchanged on the exported model.

    Args:
        sidecar: the export's verified sidecar.
        folder: the export folder.
        model_file: the ONNX file inside `folder` (default the sidecar's, e.g. a quantised variant).
        threads: onnxruntime intra-op threads.
        pad_text: passed to the runtime factory when it takes it (``max_length`` gives fixed shapes).
    """

    training = False
    report_model = None  # report sections that need an nn.Module (Grad-CAM, complexity) skip themselves

    def __init__(self, sidecar: Sidecar, folder: Path, model_file: str | None = None, threads: int | None = None, **runtime_options: Any) -> None:
        self.sidecar, self.folder = sidecar, Path(folder)
        self.model_path = self.folder / (model_file or sidecar.model_file)
        self.session = create_session(self.model_path, threads)
        self.runtime = resolve(sidecar.runtime)(sidecar.preprocess, self.folder, **runtime_options)
        self.output_names = [o.name for o in sidecar.outputs]
        graph_inputs = {i.name for i in self.session.get_inputs()}
        declared = {i.name for i in sidecar.inputs}
        if graph_inputs != declared:
            raise CheckpointError(f"export {self.model_path}: the graph's inputs {sorted(graph_inputs)} differ from those in model.json {sorted(declared)}")

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Named graph inputs -> named graph outputs."""
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds)))

    def __call__(self, batch: Any) -> dict[str, Any]:
        return self.runtime.model_outputs(self.run(self.runtime.feeds(batch)), batch)

    def eval(self) -> OnnxModel:
        return self

    def to(self, *args: Any, **kwargs: Any) -> OnnxModel:
        return self


def load_export(path: Path, model_file: str | None = None, threads: int | None = None, **runtime_options: Any) -> OnnxModel:
    """Verify an export folder (every SHA-256) and open it on onnxruntime.

    Args:
        path: the export folder, its ``model.json`` or its ``model.onnx`` (another ``.onnx`` file of the
            folder, e.g. a quantised one, is used instead of the sidecar's ``model_file``).
    """
    path = Path(path)
    sidecar, folder = read_sidecar(path)
    if model_file is None and path.suffix == ".onnx":
        model_file = path.name
    return OnnxModel(sidecar, folder, model_file, threads, **runtime_options)
