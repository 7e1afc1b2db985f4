"""The contract between a model and the exporter: `ExportAdapter` (export time) and `GraphRuntime` (run time).

A domain whose ``build_model`` returns the core `FusionModel` needs nothing: `mmapps.export.fusion_io`
adapts it. A domain with its own model declares ``Domain.export``, a lazy reference to::

    make_adapter(model: nn.Module, cfg: RunConfig, domain: Domain, example: Batch) -> ExportAdapter

called with the eval-mode model loaded from the checkpoint and a collated validation batch.

The pre-processing boundary: what runs before the graph (reading and decoding files, resizing and
normalising images, tokenising text, grouping points into pillars) is mmapps' own pipeline up to a
collated `Batch`; `GraphRuntime.feeds` turns that `Batch` into the graph's named inputs with numpy
only (plus a tokenizer saved in the export folder), so it runs where torch is not installed; its
``model_outputs`` turns the graph's outputs back into what the model's ``forward`` returns, so the
task's ``postprocess`` and the domain's metrics run unchanged on onnxruntime outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from mmapps.export.spec import TensorSpec


@runtime_checkable
class GraphRuntime(Protocol):
    """Pre- and post-processing around an exported graph, rebuilt from the sidecar alone.

    Built by the callable the sidecar names in ``runtime`` as ``factory(preprocess: dict, folder: Path)``,
    where ``preprocess`` is what `ExportAdapter.preprocess` returned at export time.
    """

    def feeds(self, batch: Any) -> dict[str, np.ndarray]:
        """Graph inputs for a collated `mmapps.data.Batch`: every input the graph declares, with the
        dtype and rank of its `TensorSpec`; a modality absent from the batch is full-shape zeros with
        presence False (never a size-0 axis)."""

    def model_outputs(self, outputs: dict[str, np.ndarray], batch: Any) -> dict[str, Any]:
        """Graph outputs (by name) -> what the PyTorch model's ``forward(batch)`` returns (task -> tensor...)."""


@runtime_checkable
class ExportAdapter(Protocol):
    """How one model becomes an ONNX graph.

    Attributes:
        inputs: graph inputs in the order `module` takes them; symbolic axes name dynamic axes.
        outputs: graph outputs in the order `module` returns them.
        module: an ``nn.Module`` whose ``forward(*inputs)`` returns a tuple of tensors; no Python branch
            may depend on tensor values (presence is masking).
        runtime: lazy reference ``"package.module:attribute"`` to the `GraphRuntime` factory, stored in
            the sidecar.
    """

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    module: Any
    runtime: str

    def example(self, batch: Any) -> tuple[Any, ...]:
        """Tracing arguments built from a collated batch, every symbolic axis of size >= 2 (exporters
        specialise sizes 0 and 1)."""

    def preprocess(self, folder: Path) -> dict[str, Any]:
        """JSON-able description of the pre-processing the runtime needs (tokenizers, max lengths,
        normalisation constants); may write files under ``folder`` (e.g. ``tokenizers/<modality>``,
        paths relative to ``folder``). It becomes the sidecar's ``preprocess`` section."""

    def reference(self, model: Any, batch: Any) -> dict[str, np.ndarray]:
        """The eager model's outputs for `batch`, named like `outputs` (the parity reference)."""
