"""Everything export needs from a checkpoint: config, model with its weights, data splits, adapter."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmapps.errors import DataError


@dataclass
class LoadedCheckpoint:
    """A checkpoint made ready to export.

    Attributes:
        cfg: the checkpoint's resolved config (with overrides and the data root).
        config_yaml: the config text stored in the checkpoint (hashed into the sidecar).
        domain: the domain with the run's labels.
        model: the eval-mode PyTorch model with the checkpoint's weights.
        splits: the data splits (val for parity and thresholds, train for calibration).
        example: the first collated validation batch (tracing shapes).
        adapter: the `ExportAdapter`.
        test_metrics: the run's ``metrics.json`` beside the checkpoint's run folder, or {}.
        checkpoint: the file exported.
        split_names: the splits asked for (a domain may leave the others empty).
    """

    cfg: Any
    config_yaml: str
    domain: Any
    model: Any
    splits: Any
    example: Any
    adapter: Any
    test_metrics: dict[str, Any]
    checkpoint: Path
    split_names: tuple[str, ...] = ("train", "val", "test")

    def loader(self, split: str) -> Any:
        from mmapps.models.build import selected_modalities
        from mmapps.train.loaders import make_loader
        from mmapps.train.runtime import setup_runtime

        runtime = setup_runtime(self.cfg.train.model_copy(update={"device": "cpu"}))
        return make_loader(getattr(self.splits, split), self.cfg, self.domain, selected_modalities(self.cfg, self.domain), runtime, False, split)


def load_for_export(checkpoint: Path, domain: Any, overrides: dict[str, Any] | None = None, splits: tuple[str, ...] = ("train", "val", "test")) -> LoadedCheckpoint:
    """Read, validate and load `checkpoint` for `domain` on the CPU; build its data splits and adapter.

    Args:
        splits: the splits needed (export: ``("val",)``, plus ``"train"`` to calibrate int8). A domain whose
            ``build_datasets`` takes a ``splits`` keyword builds only those (the others are empty);
            otherwise all are built.
    """
    import torch

    from mmapps.config import deep_merge, validate_config
    from mmapps.domain import resolve, with_configured_labels
    from mmapps.models.build import build_model
    from mmapps.testing.steps import build_splits
    from mmapps.train import checkpoint as ckpt
    from mmapps.workflows.resolve import ensure_data_root

    state, metadata = ckpt.read_inference_checkpoint(Path(checkpoint))
    values = deep_merge(ckpt.checkpoint_config(metadata, Path(checkpoint), domain.name), overrides or {})
    cfg = validate_config(values)
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"device": "cpu"})})  # parity is an fp32 CPU comparison
    cfg = ensure_data_root(cfg, domain)
    domain = with_configured_labels(domain, cfg)
    model = build_model(cfg, domain)
    ckpt.load_weights(model, state, Path(checkpoint))
    model.eval()
    built = _build_splits(cfg, domain, splits, build_splits)
    loaded = LoadedCheckpoint(cfg, metadata["config"], domain, model, built, None, None, _run_metrics(Path(checkpoint)), Path(checkpoint), tuple(splits))
    if len(built.val) == 0:
        raise DataError(f"export {checkpoint}: the data root {cfg.data.root} has no validation sample ({built.issues.summary()}); parity and the decision thresholds are computed on validation: give --data with a validation split")
    with torch.no_grad():
        loaded.example = next(iter(loaded.loader("val")))
    factory = resolve(domain.export) if domain.export is not None else resolve("mmapps.export.fusion_adapter:fusion_adapter")
    loaded.adapter = factory(model, cfg, domain, loaded.example)
    return loaded


def _build_splits(cfg: Any, domain: Any, wanted: tuple[str, ...], build_all: Any) -> Any:
    import inspect

    from mmapps.domain import resolve

    fn = resolve(domain.build_datasets)
    try:
        takes = "splits" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        takes = False
    if not takes or set(wanted) >= {"train", "val", "test"}:
        return build_all(cfg, domain)
    from mmapps.data.splits import DatasetSplits
    from mmapps.testing.steps import fail, type_name

    splits = fn(cfg, splits=tuple(wanted))
    if not isinstance(splits, DatasetSplits):
        fail(domain, "datasets", f"build_datasets returned {type_name(splits)}, expected mmapps.data.DatasetSplits(train, val, test, issues, split_of_group, info)", "Domain.build_datasets")
    return splits


def _run_metrics(checkpoint: Path) -> dict[str, Any]:
    path = checkpoint.resolve().parent.parent / "metrics.json"
    try:
        values = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return values if isinstance(values, dict) else {}
