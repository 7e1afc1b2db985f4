"""Graph inputs, outputs, feeds and post-processing of the core `FusionModel` (see `mmapps.export.adapter`).

Inputs per modality, by layout (``m`` the modality name; ``batch`` the shared batch axis):

- ``fixed``:  ``m`` (batch, ...) and ``m_present`` bool (batch,);
- ``padded``: ``m`` (batch, m_elements, ...), ``m_mask`` bool (batch, m_elements), ``m_present``;
- ``text``:   ``m_input_ids`` int64 (batch, m_tokens), ``m_attention_mask`` int64 (batch, m_tokens),
  ``m_present``: the tokenizer (saved in the export folder) runs outside the graph.

One output per task, named by the task: the head's raw output (logits for classification).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mmapps.export.spec import BATCH_AXIS, TensorSpec, zeros_for

RUNTIME_REF = "mmapps.export.fusion_io:FusionRuntime"
_NP = {"torch.float32": "float32", "torch.float16": "float32", "torch.bfloat16": "float32", "torch.float64": "float32", "torch.uint8": "uint8", "torch.int64": "int64", "torch.int32": "int32", "torch.bool": "bool"}


def fusion_inputs(model: Any, domain: Any, example: Any) -> list[TensorSpec]:
    """The graph inputs of a `FusionModel`, shapes read from a collated `example` batch."""
    from mmapps.errors import ConfigError

    specs: list[TensorSpec] = []
    for m in model.modalities:
        layout = domain.modality(m).layout
        present = TensorSpec(f"{m}_present", "bool", (BATCH_AXIS,), m, "present", description=f"False where the sample lacks {m}")
        if layout == "text":
            tokens = f"{m}_tokens"
            specs += [
                TensorSpec(f"{m}_input_ids", "int64", (BATCH_AXIS, tokens), m, "input_ids", description=f"{m} token ids from the saved tokenizer"),
                TensorSpec(f"{m}_attention_mask", "int64", (BATCH_AXIS, tokens), m, "attention_mask", description="1 for real tokens"),
                present,
            ]
            continue
        data = example.inputs[m].data
        if data is None:
            raise ConfigError(f"export: modality {m!r} is absent from every sample of the validation batch used for tracing; export needs one batch where it is present")
        dtype = _NP.get(str(data.dtype), "float32")
        if layout == "fixed":
            specs += [TensorSpec(m, dtype, (BATCH_AXIS, *data.shape[1:]), m, "data"), present]
        elif layout == "padded":
            elements = f"{m}_elements"
            specs += [
                TensorSpec(m, dtype, (BATCH_AXIS, elements, *data.shape[2:]), m, "data"),
                TensorSpec(f"{m}_mask", "bool", (BATCH_AXIS, elements), m, "mask", description="True for real elements"),
                present,
            ]
        else:
            raise ConfigError(
                f"export: modality {m!r} has the {layout!r} layout, which the core FusionModel export does not take "
                "(fixed, padded and text are supported); a domain with packed inputs declares Domain.export with its own adapter"
            )
    return specs


def fusion_outputs(domain: Any, input_names: set[str]) -> list[TensorSpec]:
    from mmapps.errors import ConfigError

    outputs = []
    for task in domain.tasks:
        if task.name in input_names:
            raise ConfigError(f"export: task {task.name!r} has the name of a graph input; rename the task or the modality")
        shape = (BATCH_AXIS, len(task.labels)) if task.head != "timestep" else (BATCH_AXIS, "time", len(task.labels))
        outputs.append(TensorSpec(task.name, "float32", shape, role="output", task=task.name, description=f"{task.head} head output ({', '.join(task.labels[:3])}...)"))
    return outputs


class FusionRuntime:
    """`GraphRuntime` of the core model: a `Batch` -> named numpy inputs; outputs -> task tensors.

    Args:
        preprocess: the sidecar's ``preprocess`` section (``inputs`` as JSON `TensorSpec`s and
            ``tokenizers``: modality -> {``path`` relative to `folder`, ``max_length``}).
        folder: the export folder.
        pad_text: ``longest`` (pad to the longest text of the batch) or ``max_length`` (fixed
            shapes, for Triton's dynamic batcher).
    """

    def __init__(self, preprocess: dict[str, Any], folder: Path, pad_text: str = "longest") -> None:
        self.inputs = [TensorSpec.from_json(s) for s in preprocess["inputs"]]
        self.tokenizer_specs = preprocess.get("tokenizers", {})
        self.folder = Path(folder)
        self.pad_text = pad_text
        self._tokenizers: dict[str, Any] = {}

    def tokenizer(self, modality: str) -> Any:
        if modality not in self._tokenizers:
            from transformers import AutoTokenizer

            self._tokenizers[modality] = AutoTokenizer.from_pretrained(str(self.folder / self.tokenizer_specs[modality]["path"]), local_files_only=True)
        return self._tokenizers[modality]

    def feeds(self, batch: Any) -> dict[str, np.ndarray]:
        B = len(batch)
        feeds: dict[str, np.ndarray] = {}
        for m in sorted({s.modality for s in self.inputs if s.modality}):
            specs = {s.role: s for s in self.inputs if s.modality == m}
            mb = batch.inputs[m]
            feeds[specs["present"].name] = _numpy(mb.present).astype(bool)
            if "input_ids" in specs:
                texts = [t if isinstance(t, str) else " ".join(t) for t in mb.data]
                options = self.tokenizer_specs[m]
                padding = "max_length" if self.pad_text == "max_length" else True
                enc = self.tokenizer(m)(texts, padding=padding, truncation=True, max_length=options["max_length"], return_tensors="np")
                feeds[specs["input_ids"].name] = enc["input_ids"].astype(np.int64)
                feeds[specs["attention_mask"].name] = enc["attention_mask"].astype(np.int64)
                continue
            if mb.data is None:  # absent from the whole batch: full-shape zeros, presence False
                feeds[specs["data"].name] = zeros_for(specs["data"], B)
                if "mask" in specs:
                    feeds[specs["mask"].name] = zeros_for(specs["mask"], B)
                continue
            feeds[specs["data"].name] = _numpy(mb.data).astype(specs["data"].np_dtype, copy=False)
            if "mask" in specs:
                feeds[specs["mask"].name] = _numpy(mb.mask).astype(bool)
        return feeds

    def model_outputs(self, outputs: dict[str, np.ndarray], batch: Any) -> dict[str, Any]:
        import torch

        return {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in outputs.items()}


def _numpy(value: Any) -> np.ndarray:
    return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
