"""`ExportAdapter` of the core `FusionModel` (the default when a domain declares no ``Domain.export``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmapps.export.fusion_io import RUNTIME_REF, fusion_inputs, fusion_outputs
from mmapps.export.graph import FusionGraph


class FusionExport:
    """Adapts an eval-mode `FusionModel` (see `mmapps.export.adapter.ExportAdapter`).

    Args:
        model: the model with the checkpoint's weights.
        domain: its domain (with the run's labels).
        example: a collated validation batch (shapes of the fixed axes).
    """

    runtime = RUNTIME_REF

    def __init__(self, model: Any, domain: Any, example: Any) -> None:
        self.model, self.domain = model, domain
        self.inputs = fusion_inputs(model, domain, example)
        self.outputs = fusion_outputs(domain, {s.name for s in self.inputs})
        self.module = FusionGraph(model, self.inputs, [o.name for o in self.outputs]).eval()

    def preprocess(self, folder: Path) -> dict[str, Any]:
        from mmapps.models.encoders.text import TextTransformerEncoder

        tokenizers = {}
        for m in self.model.modalities:
            encoder = self.model.encoders[m]
            if any(s.modality == m and s.role == "input_ids" for s in self.inputs):
                if not isinstance(encoder, TextTransformerEncoder) and not hasattr(encoder, "tokenizer"):
                    raise ValueError(f"export: text modality {m!r} uses {type(encoder).__name__}, which has no tokenizer to save")
                path = Path("tokenizers") / m
                encoder.tokenizer.save_pretrained(str(Path(folder) / path))
                tokenizers[m] = {"path": path.as_posix(), "max_length": int(encoder.max_length), "padding_side": getattr(encoder.tokenizer, "padding_side", "right")}
        return {"inputs": [s.to_json() for s in self.inputs], "tokenizers": tokenizers}

    @torch.no_grad()
    def reference(self, model: Any, batch: Any) -> dict[str, np.ndarray]:
        outputs = model(batch)
        return {o.name: outputs[o.task].detach().float().cpu().numpy() for o in self.outputs}


def fusion_adapter(model: Any, cfg: Any, domain: Any, example: Any) -> FusionExport:
    """The default ``Domain.export`` factory, for models built by `mmapps.models.build.build_fusion_model`."""
    from mmapps.errors import ConfigError
    from mmapps.models.fusion_model import FusionModel

    if not isinstance(model, FusionModel):
        raise ConfigError(
            f"export: the {domain.name} domain builds its own model ({type(model).__name__}) and declares no Domain.export; "
            "a domain with its own build_model provides its graph adapter as Domain.export (see mmapps.export.adapter)"
        )
    return FusionExport(model, domain, example)
