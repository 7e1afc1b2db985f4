"""The three workflows behind the CLI verbs: train (then test), evaluate a checkpoint, predict."""

from __future__ import annotations

import contextlib
import inspect
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import yaml

from mmapps.config import RunConfig, config_to_yaml, validate_config
from mmapps.data.label_budget import apply_label_budget
from mmapps.data.views import WithoutModalities
from mmapps.domain import Domain, resolve, with_configured_labels
from mmapps.errors import ConfigError, DataError, NothingToResumeError
from mmapps.testing.steps import build_splits as build_datasets_checked
from mmapps.workflows.resolve import default_run_dir, ensure_data_root


@dataclass
class RunResult:
    """Where a run wrote its outputs and its test metrics."""

    run_dir: Path
    metrics: dict[str, Any]
    report: Path | None = None
    predictions: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)
    records: dict[str, list[Any]] = field(default_factory=dict, repr=False)  # test records per task (studies pair them)


def train(cfg: RunConfig, domain: Domain, resume: bool = False, callbacks: Sequence[Any] = (), init: Path | None = None, init_partial: bool = False) -> RunResult:
    """Train the configured model, test the best checkpoint, write metrics, predictions and the report.

    With `resume`, ``cfg.out_dir`` must be an earlier run directory: training continues from its
    ``checkpoints/resume.safetensors`` with that run's saved config. `init` (a pretraining run or checkpoint,
    `mmapps.pretrain.init`) sets the starting weights by name; `init_partial` skips tensors that do not fit.
    """
    from mmapps.train.runtime import setup_runtime

    runtime = setup_runtime(cfg.train)
    if resume:  # the folder resumed from, wherever it was copied to, not the out_dir its config.yaml names
        run_dir = Path(cfg.out_dir)
        cfg = _read_run_config(run_dir)
    else:
        run_dir = Path(cfg.out_dir) if cfg.out_dir else _shared_run_dir(cfg, runtime)
    cfg = cfg.model_copy(update={"out_dir": run_dir})
    with _run_lock(run_dir, runtime):
        return _train_locked(cfg, domain, runtime, run_dir, resume, callbacks, init, init_partial)


def _train_locked(cfg: RunConfig, domain: Domain, runtime: Any, run_dir: Path, resume: bool, callbacks: Sequence[Any], init: Path | None = None, init_partial: bool = False) -> RunResult:
    from mmapps.models.build import selected_modalities
    from mmapps.models.frozen_features import attach_frozen_feature_stores
    from mmapps.testing import build_model_checked, preflight
    from mmapps.train.runtime import seed_everything
    from mmapps.train.trainer import Trainer

    if resume:
        _check_resumable(run_dir)
    if init is not None and not resume:
        from mmapps.pretrain.init import read_init_state

        read_init_state(init, domain.name)  # an ONNX file, a non-checkpoint or another domain's fails before any data is read
    seed_everything(cfg.seed, cfg.train.deterministic)
    cfg = _prepare_data(cfg, domain, runtime)
    domain = with_configured_labels(domain, cfg)
    splits = apply_label_budget(build_datasets_checked(cfg, domain), cfg)  # data.label_budget: a labelled subset
    if len(splits.train) == 0:
        raise DataError(f"data root {cfg.data.root}: no usable training sample ({splits.issues.summary()}); check the paths and formats in docs/{domain.name}.md")
    if runtime.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(config_to_yaml(cfg))
        (run_dir / "splits.json").write_text(json.dumps(splits.split_of_group, indent=1, sort_keys=True))
    model = build_model_checked(cfg, domain)
    if init is not None and not resume:  # a resumed run restores its own weights
        from mmapps.pretrain.init import load_init

        loaded = load_init(model, init, domain.name, init_partial)
        if runtime.is_main:
            print(loaded.format(), file=sys.stderr)
    attach_frozen_feature_stores(model, cfg)  # after the init: the digest is of the weights the run uses
    modalities = selected_modalities(cfg, domain)
    preflight(cfg, domain, model.to(runtime.device), splits, modalities, runtime)  # a broken plugin callable fails in seconds, not after training
    trainer = Trainer(cfg, domain, model, splits.train, splits.val, run_dir, runtime, modalities, callbacks)
    fit = trainer.fit(resume=resume)
    from mmapps.finetune import has_adapters, parameter_info, unload_adapters
    from mmapps.train import checkpoint as ckpt

    best = run_dir / "checkpoints" / "best.safetensors"
    trainer.model = unload_adapters(ckpt.unwrap(trainer.model)) if has_adapters(trainer.model) else trainer.model  # best is merged
    if best.exists():
        state, _ = ckpt.read_inference_checkpoint(best)
        ckpt.load_weights(trainer.model, state, best)
    info = {"train samples": len(splits.train), "val samples": len(splits.val), "test samples": len(splits.test), "skipped inputs": splits.issues.summary(), "best epoch": fit.best_epoch + 1, "best step": fit.best_step, **splits.info,
            **parameter_info(trainer.parameter_counts, trainer.finetune_plan)}
    result = _test_and_report(cfg, domain, trainer.model, splits.test, splits.val, modalities, runtime, run_dir, fit.history, info)
    _write_summary(run_dir, splits.issues, runtime)
    return result


def evaluate(checkpoint: Path, domain: Domain, out_dir: Path | None = None, overrides: dict[str, Any] | None = None, drop_modalities: Sequence[str] = ()) -> RunResult:
    """Evaluate a saved checkpoint on the test split of its data (or of ``overrides['data']['root']``)."""
    from mmapps.export.model_source import load_model
    from mmapps.models.frozen_features import attach_frozen_feature_stores
    from mmapps.models.build import selected_modalities
    from mmapps.train.runtime import setup_runtime

    cfg, state = _config_from_checkpoint(checkpoint, overrides, domain.name)
    runtime = setup_runtime(cfg.train)
    run_dir = Path(out_dir) if out_dir else Path(checkpoint).resolve().parent.parent / "eval"
    cfg = _prepare_data(cfg.model_copy(update={"out_dir": run_dir}), domain, runtime)
    domain = with_configured_labels(domain, cfg)
    splits = build_datasets_checked(cfg, domain)
    model = load_model(checkpoint, cfg, domain, state, runtime.device)  # a .safetensors checkpoint, or an export on onnxruntime
    attach_frozen_feature_stores(model, cfg)
    test = WithoutModalities(splits.test, drop_modalities) if drop_modalities else splits.test
    val = WithoutModalities(splits.val, drop_modalities) if drop_modalities else splits.val
    run_dir.mkdir(parents=True, exist_ok=True)
    info = {"checkpoint": str(checkpoint), "removed modalities": ", ".join(drop_modalities) or "none", "skipped inputs": splits.issues.summary()}
    result = _test_and_report(cfg, domain, model, test, val, selected_modalities(cfg, domain), runtime, run_dir, [], info)
    _write_summary(run_dir, splits.issues, runtime)
    return result


def predict(checkpoint: Path, domain: Domain, data_root: Path, out_dir: Path, split: str = "test", overrides: dict[str, Any] | None = None) -> Path:
    """Write the domain's prediction file for one split of the data at `data_root` (`overrides`: nested config values)."""
    from mmapps.evaluation.records import predict_records
    from mmapps.export.model_source import load_model
    from mmapps.models.frozen_features import attach_frozen_feature_stores
    from mmapps.models.build import selected_modalities
    from mmapps.train.runtime import setup_runtime
    from mmapps.train.trainer import make_loader

    from mmapps.config import deep_merge

    cfg, state = _config_from_checkpoint(checkpoint, deep_merge(overrides or {}, {"data": {"root": str(data_root)}}), domain.name)
    runtime = setup_runtime(cfg.train)
    domain = with_configured_labels(domain, cfg)
    splits = build_datasets_checked(cfg, domain)
    if split not in ("train", "val", "test"):
        raise DataError(f"--split {split!r}: expected train, val or test")
    dataset = getattr(splits, split)
    if len(dataset) == 0:
        sizes = ", ".join(f"{name} {len(getattr(splits, name))}" for name in ("train", "val", "test"))
        raise DataError(f"--split {split}: {data_root} holds no {split} sample ({sizes}; {splits.issues.summary()}); choose --split with samples, or check the data against docs/{domain.name}.md")
    model = load_model(checkpoint, cfg, domain, state, runtime.device)
    attach_frozen_feature_stores(model, cfg)
    loader = make_loader(dataset, cfg, domain, selected_modalities(cfg, domain), runtime, train=False, split=split)
    records = predict_records(model, loader, domain, runtime)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    path = write_predictions(domain, records, Path(out_dir))
    _write_summary(Path(out_dir), splits.issues, runtime)
    return path


# -- shared steps ---------------------------------------------------------------------------------
def _test_and_report(cfg, domain, model, test_set, val_set, modalities, runtime, run_dir: Path, history, info) -> RunResult:
    from mmapps.evaluation.records import predict_records
    from mmapps.report import ReportContext, write_report
    from mmapps.train.trainer import compute_metrics, make_loader

    test_records = predict_records(model, make_loader(test_set, cfg, domain, modalities, runtime, False, "test"), domain, runtime)
    val_records = predict_records(model, make_loader(val_set, cfg, domain, modalities, runtime, False, "val"), domain, runtime) if len(val_set) else {}
    if not runtime.is_main:
        return RunResult(run_dir, {})
    metrics = compute_metrics(domain, test_records, cfg, val_records)
    predictions = write_predictions(domain, test_records, run_dir)
    notes = list(info.pop("notes", []))
    report_model = getattr(model, "report_model", model)  # an exported model offers no nn.Module to report sections
    ctx = ReportContext(cfg, domain, run_dir, run_dir / "figures", metrics, test_records, val_records, report_model, test_set, history, notes, info)
    report = write_report(ctx)  # report sections may add metrics (e.g. medical's pointing game)
    (run_dir / "metrics.json").write_text(json.dumps(_finite(metrics), indent=2, sort_keys=True))
    return RunResult(run_dir, metrics, report, predictions, info, test_records)


def write_predictions(domain: Domain, records: dict[str, list[Any]], out_dir: Path) -> Path:
    """The domain's writer, or JSON Lines of the records (one line per sample and task)."""
    if domain.write_predictions is not None:
        writer = resolve(domain.write_predictions)
        if "labels" in inspect.signature(writer).parameters:  # optional: task name -> label names of this run
            return writer(records, out_dir, labels={t.name: list(t.labels) for t in domain.tasks})
        return writer(records, out_dir)
    path = out_dir / "predictions.jsonl"
    with path.open("w") as handle:
        for task, rows in records.items():
            for r in rows:
                handle.write(json.dumps({"sample_id": r.sample_id, "task": task, **r.prediction}) + "\n")
    return path


def _prepare_data(cfg: RunConfig, domain: Domain, runtime) -> RunConfig:
    if runtime.is_main:
        cfg = ensure_data_root(cfg, domain)
    if runtime.distributed:
        import torch.distributed as dist

        holder = [cfg.data.root]
        dist.broadcast_object_list(holder, src=0)
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"root": holder[0]})})
    return cfg


def _shared_run_dir(cfg: RunConfig, runtime) -> Path:
    path = default_run_dir(cfg)
    if runtime.distributed:
        import torch.distributed as dist

        holder = [path]
        dist.broadcast_object_list(holder, src=0)
        path = holder[0]
    return Path(path)


def _read_run_config(run_dir: Path) -> RunConfig:
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise NothingToResumeError(
            f"--resume {run_dir}: nothing to resume, no config.yaml there ({'the folder does not exist' if not run_dir.exists() else 'not a run folder, or the run stopped before writing it'}); "
            "give the folder of the run to continue, or start without --resume"
        )
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"--resume {run_dir}: {path} is not plain YAML ({str(err).splitlines()[0]}); mmapps writes it with yaml.safe_dump") from None
    if not isinstance(values, dict):
        raise ConfigError(f"--resume {run_dir}: {path} holds a {type(values).__name__}, expected a mapping of config fields")
    return validate_config(values)


def _check_resumable(run_dir: Path) -> None:
    """Fail before any data is read when the folder has no resumable checkpoint."""
    from mmapps.train import checkpoint as ckpt

    path = run_dir / "checkpoints" / ckpt.TRAINING_STATE_FILE
    if not path.is_file():
        ckpt.load_training_state(path)  # raises NothingToResumeError, or CheckpointError for an old pickle-based last.pt


@contextlib.contextmanager
def _run_lock(run_dir: Path, runtime: Any) -> Iterator[None]:
    """Hold the run folder's lock (main process) and remove temporaries of interrupted checkpoint writes."""
    if not runtime.is_main:
        yield
        return
    from mmapps.train import checkpoint as ckpt
    from mmapps.train.lock import RunLock

    with RunLock(run_dir):
        removed = ckpt.clean_stale_temporaries(run_dir / "checkpoints")
        if removed:
            size = sum(n for _, n in removed) / 1e6
            print(f"note: removed {len(removed)} temporary file(s) ({size:.1f} MB) left by an interrupted checkpoint write in {run_dir / 'checkpoints'}", file=sys.stderr)
        yield


def _config_from_checkpoint(checkpoint: Path, overrides: dict[str, Any] | None, domain: str | None = None):
    from mmapps.config import deep_merge
    from mmapps.export.model_source import exported_config, is_export
    from mmapps.train import checkpoint as ckpt

    if is_export(Path(checkpoint)):  # an exported model: its config is in the verified model.json
        return exported_config(Path(checkpoint), overrides, domain), None
    state, metadata = ckpt.read_inference_checkpoint(Path(checkpoint))
    values = ckpt.checkpoint_config(metadata, Path(checkpoint), domain)
    values = deep_merge(values, overrides or {})
    return validate_config(values), state


def _write_summary(run_dir: Path, issues, runtime) -> None:
    if not runtime.is_main:
        return
    summary = {"skipped": len(issues), "summary": issues.summary(), "issues": [str(i) for i in issues.issues]}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    if issues.issues:
        print(f"warning: {issues.summary()}; details in {run_dir / 'summary.json'}", file=sys.stderr)


def _finite(metrics: dict[str, Any]) -> dict[str, Any]:
    import math

    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
