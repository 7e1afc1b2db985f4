"""`mmapps <domain> prune`: load a checkpoint, prune, optionally fine-tune, save, test and report.

The output folder is a run folder like `train`'s (``checkpoints/best.safetensors``, ``metrics.json``,
``report.md`` with the complexity section, predictions) plus ``prune.json``; it is written in a
temporary folder beside `out_dir` and renamed at the end, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from mmapps.domain import Domain
from mmapps.errors import ConfigError

Method = Literal["channels", "magnitude"]


@dataclass
class PruneSummary:
    """Before/after figures of one pruning (also written to ``prune.json``)."""

    method: str
    amount: float
    text_layers_dropped: int
    parameters_before: int
    parameters_after: int
    macs_before: float
    macs_after: float
    layers: dict[str, Any]
    finetune_epochs: int
    seconds: float
    checkpoint_bytes: int = 0
    checkpoint_compressed_bytes: int = 0
    weight_sparsity: float = 0.0


@dataclass
class PruneResult:
    """Where the pruned run was written, its test metrics and its summary."""

    out_dir: Path
    checkpoint: Path
    metrics: dict[str, Any]
    report: Path | None
    summary: PruneSummary


def prune(
    checkpoint: Path, domain: Domain, out_dir: Path | None = None, amount: float = 0.3, method: Method = "channels",
    drop_text_layers: int = 0, finetune_epochs: int = 0, overrides: dict[str, Any] | None = None,
) -> PruneResult:
    """Prune the model of `checkpoint` and write a normal run folder holding the pruned checkpoint.

    Args:
        checkpoint: a ``.safetensors`` checkpoint written by train (or by an earlier prune).
        domain: the domain that trained it (another domain's checkpoint is refused).
        out_dir: where the pruned run goes (default ``<run>/pruned-<method>-<amount>``); must not exist yet.
        amount: share of channels (``channels``) or weights (``magnitude``) removed, in [0, 1).
        method: ``channels`` (structured, torch-pruning) or ``magnitude`` (unstructured zeros).
        drop_text_layers: top layers removed from each pretrained text transformer.
        finetune_epochs: epochs of the normal trainer after pruning (0: none).
        overrides: nested config values (e.g. ``{"data": {"root": ...}}``).

    Raises:
        ConfigError: a bad amount or method, an existing `out_dir`, nothing prunable.
        CheckpointError: a missing, corrupt or foreign checkpoint.
    """
    from mmapps.config import PrunedConfig
    from mmapps.workflows.run import _config_from_checkpoint

    if method not in ("channels", "magnitude"):
        raise ConfigError(f"--method {method!r}: expected channels (structured, smaller and faster) or magnitude (unstructured zeros, compressible files)")
    if finetune_epochs < 0:
        raise ConfigError(f"--finetune-epochs {finetune_epochs}: expected 0 or more")
    cfg, state = _config_from_checkpoint(Path(checkpoint), overrides, domain.name)
    out_dir = Path(out_dir) if out_dir else Path(checkpoint).resolve().parent.parent / f"pruned-{method}-{amount:g}"
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ConfigError(f"--out {out_dir}: the folder exists and is not empty; give a new folder for the pruned run")
    if cfg.model.pruned is not None and cfg.model.pruned.method != method:
        raise ConfigError(f"checkpoint {checkpoint}: already pruned by {cfg.model.pruned.method}; prune it again with --method {cfg.model.pruned.method}, or prune the unpruned checkpoint")
    tmp = out_dir.parent / f".{out_dir.name}.prune-{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        result = _prune_into(tmp, out_dir, cfg, state, Path(checkpoint), domain, amount, method, drop_text_layers, finetune_epochs, PrunedConfig)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        if out_dir.exists():
            out_dir.rmdir()  # empty (checked above)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _moved(result, tmp, out_dir)


def _prune_into(run_dir: Path, final_dir: Path, cfg, state, checkpoint: Path, domain: Domain, amount: float, method: str, drop_text: int, epochs: int, PrunedConfig) -> PruneResult:
    from mmapps.config import config_to_yaml
    from mmapps.domain import with_configured_labels
    from mmapps.models.build import build_model, selected_modalities
    from mmapps.prune.channels import prune_channels
    from mmapps.prune.layers import drop_text_layers
    from mmapps.prune.magnitude import compressed_size, prune_magnitude, sparsity
    from mmapps.prune.structure import changed_shapes, state_shapes
    from mmapps.report.complexity import count_macs, count_parameters, first_batch
    from mmapps.testing.steps import build_splits
    from mmapps.train import checkpoint as ckpt
    from mmapps.train.runtime import seed_everything, setup_runtime
    from mmapps.workflows.run import _prepare_data, _test_and_report, _write_summary

    started = time.perf_counter()
    runtime = setup_runtime(cfg.train)
    seed_everything(cfg.seed, cfg.train.deterministic)
    cfg = _prepare_data(cfg.model_copy(update={"out_dir": final_dir}), domain, runtime)
    domain = with_configured_labels(domain, cfg)
    splits = build_splits(cfg, domain)
    model = build_model(cfg, domain)
    ckpt.load_weights(model, state, checkpoint)
    model.to(runtime.device)
    source = splits.train if len(splits.train) else splits.val
    batch = first_batch(source, cfg, domain, min(cfg.train.batch_size, 8))
    if batch is None:
        raise ConfigError(f"data root {cfg.data.root}: no training or validation sample to trace the model on ({splits.issues.summary()})")
    batch = batch.to(runtime.device)
    params_before, macs_before = count_parameters(model)[-1].total, count_macs(model, batch).per_sample
    previous = cfg.model.pruned
    kept = drop_text_layers(model, drop_text)
    kept_all = _compose(previous.kept_layers if previous else {}, kept)
    reference = _reference_shapes(cfg, domain, kept_all, state_shapes, build_model, PrunedConfig)
    if method == "channels":
        layers: dict[str, Any] = prune_channels(model, batch, amount).layers
    else:
        layers = prune_magnitude(model, amount).layers
    total_amount = 1 - (1 - previous.amount) * (1 - amount) if previous else amount
    pruned = PrunedConfig(method=method, amount=round(total_amount, 6), kept_layers=kept_all, shapes=changed_shapes(reference, model))
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"pruned": pruned})})
    params_after, macs_after = count_parameters(model)[-1].total, count_macs(model, batch).per_sample
    modalities = selected_modalities(cfg, domain)
    history: list[dict[str, Any]] = []
    best = run_dir / "checkpoints" / "best.safetensors"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(config_to_yaml(cfg))
    if epochs:
        from mmapps.train.trainer import Trainer

        tuned = cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": epochs})})
        history = Trainer(tuned, domain, model, splits.train, splits.val, run_dir, runtime, modalities).fit().history
        state_best, _ = ckpt.read_inference_checkpoint(best)
        ckpt.load_weights(model, state_best, best)
    else:
        ckpt.save_inference_checkpoint(best, model, config_to_yaml(cfg), {t.name: list(t.labels) for t in domain.tasks}, {"pruned_from": str(checkpoint)})
    model.eval()
    summary = PruneSummary(method, amount, drop_text, params_before, params_after, macs_before, macs_after, _jsonable_layers(layers), epochs, 0.0, best.stat().st_size)
    if method == "magnitude":
        summary.checkpoint_compressed_bytes, summary.weight_sparsity = compressed_size(best), sparsity(model)
    info = _report_facts(summary, checkpoint)
    result = _test_and_report(cfg, domain, model, splits.test, splits.val, modalities, runtime, run_dir, history, info)
    _write_summary(run_dir, splits.issues, runtime)
    summary.seconds = time.perf_counter() - started
    (run_dir / "prune.json").write_text(json.dumps(asdict(summary), indent=2))
    return PruneResult(run_dir, best, result.metrics, result.report, summary)


def _compose(previous: dict[str, list[int]], new: dict[str, list[int]]) -> dict[str, list[int]]:
    """Kept indices relative to the original layer lists, after dropping `new` from lists already cut to `previous`."""
    merged = dict(previous)
    for path, kept in new.items():
        merged[path] = [previous[path][i] for i in kept] if path in previous else list(kept)
    return merged


def _reference_shapes(cfg, domain, kept_layers, state_shapes, build_model, PrunedConfig) -> dict[str, list[int]]:
    """Tensor shapes of the recipe's model with only the layer drops applied (what ``shapes`` is relative to)."""
    base = PrunedConfig(method="channels", amount=0.0, kept_layers=kept_layers) if kept_layers else None
    fresh = cfg.model_copy(update={"model": cfg.model.model_copy(update={"pruned": base})})
    return state_shapes(build_model(fresh, domain))


def _jsonable_layers(layers: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in layers.items()}


def _report_facts(summary: PruneSummary, checkpoint: Path) -> dict[str, Any]:
    what = "channels removed" if summary.method == "channels" else "weights zeroed"
    info: dict[str, Any] = {
        "pruned from": str(checkpoint),
        "pruning": f"{summary.method}, {summary.amount:.0%} of {what}" + (f", top {summary.text_layers_dropped} text layers dropped" if summary.text_layers_dropped else ""),
        "parameters (before -> after)": f"{summary.parameters_before:,} -> {summary.parameters_after:,}",
        "MACs per sample (before -> after)": f"{summary.macs_before / 1e6:.2f} M -> {summary.macs_after / 1e6:.2f} M",
        "fine-tuning epochs": summary.finetune_epochs,
    }
    if summary.method == "magnitude":
        info["notes"] = [
            "Unstructured magnitude pruning zeroes weights but keeps every tensor's shape: the checkpoint compresses "
            f"({summary.checkpoint_bytes / 1e6:.1f} MB -> {summary.checkpoint_compressed_bytes / 1e6:.1f} MB with zlib), dense kernels are not faster"
        ]
        info["weight sparsity"] = f"{summary.weight_sparsity:.1%}"
    return info


def _moved(result: PruneResult, tmp: Path, out_dir: Path) -> PruneResult:
    def move(path: Path | None) -> Path | None:
        return None if path is None else out_dir / Path(path).relative_to(tmp)

    return PruneResult(out_dir, move(result.checkpoint), result.metrics, move(result.report), result.summary)

