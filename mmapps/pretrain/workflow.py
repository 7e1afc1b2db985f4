"""The workflow behind ``mmapps <domain> pretrain``: pool -> statistics -> the one Trainer -> transferable weights -> report."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mmapps.config import RunConfig, config_to_yaml
from mmapps.domain import Domain, with_configured_labels
from mmapps.errors import DataError

PRETRAINED_FILE = "pretrained.safetensors"
DECODERS_FILE = "decoders.safetensors"


@dataclass
class PretrainResult:
    """Where a pretraining run wrote its outputs, and its held-out figures."""

    run_dir: Path
    metrics: dict[str, float]
    checkpoint: Path | None = None
    report: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)


def default_pretrain_dir(cfg: RunConfig) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.domain}-pretrain-{cfg.recipe}-s{cfg.seed}-{stamp}"


def pretrain(cfg: RunConfig, domain: Domain, resume: bool = False, callbacks: Sequence[Any] = ()) -> PretrainResult:
    """Pretrain the domain's encoders and fusion on the train split without labels.

    With `resume`, ``cfg.out_dir`` is an earlier pretraining run directory; it continues from its
    ``checkpoints/resume.safetensors`` with that run's saved config (bit-equal to an uninterrupted run).
    """
    from mmapps.train.runtime import setup_runtime
    from mmapps.workflows.run import _read_run_config, _run_lock

    runtime = setup_runtime(cfg.train)
    if resume:
        run_dir = Path(cfg.out_dir)
        cfg = _read_run_config(run_dir)
    else:
        run_dir = Path(cfg.out_dir) if cfg.out_dir else default_pretrain_dir(cfg)
    cfg = cfg.model_copy(update={"out_dir": run_dir})
    with _run_lock(run_dir, runtime):
        return _pretrain_locked(cfg, domain, runtime, run_dir, resume, callbacks)


def _pretrain_locked(cfg: RunConfig, domain: Domain, runtime: Any, run_dir: Path, resume: bool, callbacks: Sequence[Any]) -> PretrainResult:
    from mmapps.models.build import selected_modalities
    from mmapps.models.frozen_features import attach_frozen_feature_stores
    from mmapps.pretrain.baseline import fit_statistics
    from mmapps.pretrain.build import build_pretrain_model, check_pretrain_config
    from mmapps.pretrain.objective import PretrainLog, PretrainObjective
    from mmapps.pretrain.pool import split_pool
    from mmapps.testing import build_model_checked
    from mmapps.testing.steps import build_splits
    from mmapps.train.runtime import seed_everything
    from mmapps.train.trainer import Trainer, make_loader
    from mmapps.workflows.run import _check_resumable, _prepare_data, _write_summary

    if resume:
        _check_resumable(run_dir)
    check_pretrain_config(cfg, domain, selected_modalities(cfg, domain))  # before any data is read
    seed_everything(cfg.seed, cfg.train.deterministic)
    cfg = _prepare_data(cfg, domain, runtime)
    domain = with_configured_labels(domain, cfg)
    splits = build_splits(cfg, domain)
    pool, held_out = split_pool(splits.train, cfg.pretrain.held_out, cfg.seed)  # the train split only: never val or test
    if len(pool) == 0:
        raise DataError(f"data root {cfg.data.root}: no usable training sample to pretrain on ({splits.issues.summary()}); check the paths and formats in docs/{domain.name}.md")
    modalities = selected_modalities(cfg, domain)
    if cfg.pretrain.shuffle_pairs:  # the control: no true pair in the pool; the held-out set keeps its pairs
        from mmapps.pretrain.shuffle import ShuffledPairs

        pool = ShuffledPairs(pool, modalities, {m: domain.modality(m).layout for m in modalities}, pool.group_ids, cfg.seed)
    if runtime.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(config_to_yaml(cfg))
        (run_dir / "pool.json").write_text(json.dumps({"pool samples": len(pool), "held-out samples": len(held_out), "train split samples": len(splits.train), "held-out fraction of groups": cfg.pretrain.held_out,
                                                      "pairs shuffled across samples": cfg.pretrain.shuffle_pairs}, indent=1))
    backbone = build_model_checked(cfg, domain)
    attach_frozen_feature_stores(backbone, cfg)  # the frozen text targets, shared with the fine-tuning runs
    model, transferred = build_pretrain_model(cfg, domain, backbone, modalities)
    model.to(runtime.device)
    # every process reads the same pool batches (not its DDP shard): the same target statistics,
    # priors and trivial losses on every rank; held-out evaluation (rank 0) reads the whole held-out set
    whole = replace(runtime, rank=0, world_size=1)
    statistics = make_loader(pool, cfg, domain, modalities, whole, train=False, split="train")
    batches = [b.to(runtime.device) for _, b in zip(range(cfg.pretrain.statistics_batches), statistics)]
    means = fit_statistics(model, batches)
    objective = PretrainObjective(means, make_loader(held_out, cfg, domain, modalities, whole, train=False, split="val") if len(held_out) else None)
    log = PretrainLog(objective, run_dir / "logs", cfg.train.tensorboard)
    trainer = Trainer(cfg, domain, model, pool, held_out, run_dir, runtime, modalities, [log, *callbacks], objective=objective)
    fit = trainer.fit(resume=resume)
    from mmapps.train import checkpoint as ckpt

    best = run_dir / "checkpoints" / "best.safetensors"
    if best.exists():
        state, _ = ckpt.read_inference_checkpoint(best)
        ckpt.load_weights(trainer.model, state, best)
    info = {"pool samples": len(pool), "held-out samples": len(held_out), "best epoch": fit.best_epoch + 1, "epochs run": fit.epochs_run, "skipped inputs": splits.issues.summary(), "transferred": ", ".join(transferred)}
    if not runtime.is_main:
        return PretrainResult(run_dir, {}, info=info)
    checkpoint = write_pretrained(run_dir, ckpt.unwrap(trainer.model), transferred, cfg, domain, fit.best_epoch)
    from mmapps.pretrain.report import write_pretrain_report

    metrics, report = write_pretrain_report(run_dir, cfg, domain, ckpt.unwrap(trainer.model), objective.held_out, means, runtime, fit.history, info)
    _write_summary(run_dir, splits.issues, runtime)
    return PretrainResult(run_dir, metrics, checkpoint, report, info)


def write_pretrained(run_dir: Path, model: Any, transferred: Sequence[str], cfg: RunConfig, domain: Domain, epoch: int) -> Path:
    """``checkpoints/pretrained.safetensors``: the transferred weights under the domain model's own names, for ``train --init``;
    ``checkpoints/decoders.safetensors``: everything else (decoders, contrastive projections), kept apart."""
    from safetensors.torch import save

    from mmapps.train import checkpoint as ckpt

    backbone = {k: v.detach().contiguous().cpu() for k, v in model.backbone.state_dict().items()}
    keep = {k: v for k, v in backbone.items() if any(k == name or k.startswith(name + ".") for name in transferred)}
    rest = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if not k.startswith("backbone.")}
    extra = {"kind": "pretrain", "epoch": epoch, "transferred": list(transferred), "modalities": list(model.modalities)}
    metadata = {"format": ckpt.FORMAT, "config": config_to_yaml(cfg), "labels": json.dumps({t.name: list(t.labels) for t in domain.tasks}), "extra": json.dumps(extra)}
    path = run_dir / "checkpoints" / PRETRAINED_FILE
    payload = save(keep, metadata=metadata)
    ckpt.atomic_write(path, lambda handle: handle.write(payload))
    if rest:
        decoders = save(rest, metadata={**metadata, "extra": json.dumps({**extra, "kind": "pretrain-decoders"})})
        ckpt.atomic_write(run_dir / "checkpoints" / DECODERS_FILE, lambda handle: handle.write(decoders))
    print(f"pretrained weights: {path} ({len(keep)} tensors of {', '.join(transferred)})", file=sys.stderr)
    return path
