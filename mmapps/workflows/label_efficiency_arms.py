"""The runs of the label-efficiency study: the cached pretraining(s), one fine-tuning arm, the controls."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmapps.domain import Domain
from mmapps.workflows.label_efficiency import COMMON, ArmRun, StudyPreset, ValidatedSteps, budget_name
from mmapps.workflows.label_efficiency_stats import PeakMemory


@dataclass
class Pretraining:
    name: str
    run_dir: Path
    checkpoint: Path
    steps: int
    cost: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


MODALITY_DROPOUT = 0.25  # the modality_dropout control's per-sample probability of dropping a present modality in fine-tuning
# (where the main arms already drop modalities, the control fine-tunes without: 0)


class StudyContext:
    """Resolves configs, runs (or reuses) pretrainings and fine-tuning runs in one folder."""

    def __init__(self, domain: Domain, setup: dict[str, Any], overrides: list[str], out_dir: Path, cached_only: bool = False, validated_steps: ValidatedSteps | None = None,
                 pretrain_epochs: int | None = None) -> None:
        self.domain, self.setup, self.overrides, self.out_dir = domain, setup, overrides, out_dir
        self.cached_only = cached_only  # nothing is trained: finished runs are read, missing ones are None
        self.validated_steps = validated_steps  # the runs' steps chosen on validation (else the fixed self.steps)
        self.pretrain_epochs = pretrain_epochs  # every pretraining's epochs (else the setup's schedule)
        self.recipe = setup["recipe"] if setup["recipe"] in domain.recipes else "smoke"
        user_steps = [o.split("=", 1)[1] for o in overrides if o.startswith("train.max_steps=")]
        self.steps = int(user_steps[-1]) if user_steps else int(setup["steps"])
        self._base_config: Any = None

    def base(self, *extra: str) -> list[str]:
        """Study overrides, then the arm's (`extra`), then the user's ``--set`` (which win)."""
        return [*self.setup["overrides"], *COMMON, *extra, *self.overrides]

    # -- pretraining --------------------------------------------------------------------------
    def pretraining(self, name: str, *extra: str) -> Pretraining | None:
        """The pretraining `name` (extra overrides), run once and reused from ``<out>/pretrain-<name>[-e<epochs>]``; None when cached-only and not finished."""
        from mmapps.pretrain.recipes import resolve_pretrain_config
        from mmapps.pretrain.workflow import PRETRAINED_FILE, pretrain
        from mmapps.train import checkpoint as ckpt

        if self.pretrain_epochs is not None:  # another schedule: another folder, never the fixed-steps presets' pretraining
            name, extra = f"{name}-e{self.pretrain_epochs}", (f"train.epochs={self.pretrain_epochs}", *extra)
        run_dir = self.out_dir / f"pretrain-{name}"
        checkpoint = run_dir / "checkpoints" / PRETRAINED_FILE
        cost_file = run_dir / "study_cost.json"
        if not checkpoint.exists() and self.cached_only:
            return None
        if not checkpoint.exists():
            wall, cpu = time.perf_counter(), time.process_time()
            overrides = [o for o in self.base(*self.setup["pretrain"], *extra) if not o.startswith("data.label_budget")] + [f"out_dir={run_dir}"]
            cfg = resolve_pretrain_config(self.domain, self.recipe, overrides=overrides)
            resume = (run_dir / "checkpoints" / ckpt.TRAINING_STATE_FILE).exists()  # an interrupted study continues its pretraining exactly
            result = pretrain(cfg, self.domain, resume=resume)
            import json

            cost_file.write_text(json.dumps({"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu, "metrics": result.metrics}, default=str))
        import json

        saved = json.loads(cost_file.read_text()) if cost_file.exists() else {}
        steps = optimiser_steps(run_dir) or logged_steps(run_dir)  # a state of another format (an older study's last.pt) is never unpickled
        return Pretraining(name, run_dir, checkpoint, steps, {k: saved[k] for k in ("wall_s", "cpu_s") if k in saved}, saved.get("metrics", {}))

    # -- fine-tuning --------------------------------------------------------------------------
    def finetune(self, arm: str, budget: int | None, seed: int, lr: float, init: Path | None = None, extra: Sequence[str] = (),
                 steps: int | None = None, score_val: bool = False, partial: bool = False) -> ArmRun | None:
        """One fine-tuning run (reused when finished; None when cached-only and not finished)."""
        from mmapps.workflows.resolve import resolve_config
        from mmapps.workflows.run import train

        validated = self.validated_steps if steps is None else None  # an explicit step count (compute-matched) stays fixed
        run_dir = self.out_dir / "runs" / f"{arm}-b{budget_name(budget)}-s{seed}-lr{lr:g}{f'-upto{validated.max_steps}' if validated else ''}"
        saved = read_run(run_dir)
        if saved is not None or self.cached_only:  # a finished run of an interrupted or repeated study is reused
            return saved
        schedule = validated.overrides() if validated else [f"train.max_steps={steps or self.steps}"]
        overrides = self.base(f"train.lr={lr}", *schedule, *extra) + [f"seed={seed}", f"out_dir={run_dir}"]
        if budget is not None:
            overrides.append(f"data.label_budget={budget}")
        cfg = resolve_config(self.domain, self.recipe, overrides=overrides)
        wall, cpu = time.perf_counter(), time.process_time()
        with PeakMemory() as peak:
            result = train(cfg, self.domain, init=init, init_partial=partial) if init is not None else train(cfg, self.domain)
        primary = primary_key(self.domain)
        run = ArmRun(arm, budget, seed, lr, float(result.metrics.get(primary, math.nan)), run_dir, list(getattr(result, "records", {}).get(self.domain.primary_task.name, [])),
                     wall_s=time.perf_counter() - wall, cpu_s=time.process_time() - cpu, info={**result.info, "peak_rss_mb": peak.mb, "init": str(init) if init is not None else None})
        train_s = training_seconds(run_dir)
        run.info["steps run"] = steps_run = optimiser_steps(run_dir) or (steps or self.steps)
        run.info["train_samples_per_s"] = steps_run * cfg.train.batch_size / train_s if train_s else math.nan
        if score_val:
            run.val_metric = self.val_metric(run_dir / "checkpoints" / "best.safetensors")
        write_run(run)
        return run

    def val_metric(self, checkpoint: Path) -> float:
        """The primary metric of a checkpoint on the (full) validation split: the LR choice only."""
        return self.score(checkpoint, "val")[0][0]

    def score(self, checkpoint: Path, split: str, removed: Sequence[str | None] = (None,)) -> list[tuple[float, list[Any]]]:
        """Per entry of `removed` (a modality absent from every sample, or None), the primary metric and records of a
        checkpoint on one split (every label); the model and the split are loaded once."""
        from mmapps.data.views import WithoutModalities
        from mmapps.evaluation.records import predict_records
        from mmapps.models.build import build_model, selected_modalities
        from mmapps.models.frozen_features import attach_frozen_feature_stores
        from mmapps.testing.steps import build_splits
        from mmapps.train import checkpoint as ckpt
        from mmapps.train.runtime import setup_runtime
        from mmapps.train.trainer import compute_metrics, make_loader
        from mmapps.workflows.run import _config_from_checkpoint

        cfg, state = _config_from_checkpoint(checkpoint, {"data": {"label_budget": None, "label_budget_val": None}, "eval": {"bootstrap_resamples": 0}}, self.domain.name)
        runtime = setup_runtime(cfg.train)
        dataset = getattr(build_splits(cfg, self.domain), split)
        model = build_model(cfg, self.domain)
        ckpt.load_weights(model, state, checkpoint)
        attach_frozen_feature_stores(model, cfg)
        scored = []
        for modality in removed:
            view = WithoutModalities(dataset, (modality,)) if modality is not None else dataset
            records = predict_records(model, make_loader(view, cfg, self.domain, selected_modalities(cfg, self.domain), runtime, False, split), self.domain, runtime)
            scored.append((float(compute_metrics(self.domain, records, cfg).get(primary_key(self.domain), math.nan)), records.get(self.domain.primary_task.name, [])))
        return scored

    def without(self, run: ArmRun | None, modalities: Sequence[str]) -> dict[str, ArmRun]:
        """`run`'s weights tested with each of `modalities` absent from every test sample (reused when scored; none missing when cached-only)."""
        if run is None:
            return {}
        folders = {m: run.run_dir / f"test-without-{m}" for m in modalities}
        found = {m: saved for m, folder in folders.items() if (saved := read_run(folder)) is not None}
        todo = [m for m in modalities if m not in found]
        if not todo or self.cached_only:
            return found
        wall, cpu = time.perf_counter(), time.process_time()
        results = self.score(run.run_dir / "checkpoints" / "best.safetensors", "test", todo)
        share_wall, share_cpu = (time.perf_counter() - wall) / len(todo), (time.process_time() - cpu) / len(todo)
        for m, (metric, records) in zip(todo, results):
            folders[m].mkdir(parents=True, exist_ok=True)
            found[m] = ArmRun(run.arm, run.budget, run.seed, run.lr, metric, folders[m], records, wall_s=share_wall, cpu_s=share_cpu, info={**run.info, "removed at test": m})
            write_run(found[m])
        return found

    def used_modalities(self) -> list[str]:
        """The modalities the study's model reads (a domain may declare more, e.g. optional pre-extracted features)."""
        from mmapps.models.build import selected_modalities

        return selected_modalities(self.base_config(), self.domain)

    def base_config(self) -> Any:
        """The main arms' resolved config without an arm's own overrides (resolved once)."""
        if self._base_config is None:
            from mmapps.workflows.resolve import resolve_config

            self._base_config = resolve_config(self.domain, self.recipe, overrides=self.base())
        return self._base_config

    def built_dropout(self) -> float:
        """The main arms' ``model.fusion.modality_dropout`` (the recipe's, or the user's ``--set``)."""

        return float(self.base_config().model.fusion.modality_dropout)

    def parts(self, trainable_only: bool = False) -> list[str]:
        """The model's part names (modalities, fusion); with `trainable_only`, those with trainable weights as built."""
        from mmapps.finetune import find_parts
        from mmapps.models.build import build_model

        model = build_model(self.base_config(), self.domain)
        found = find_parts(model).parts
        return [n for n, (_, m) in found.items() if not trainable_only or any(p.requires_grad for p in m.parameters())]

    # -- controls -----------------------------------------------------------------------------
    def controls(self, plan: StudyPreset, pretraining: Pretraining | None, runs: list[ArmRun]) -> dict[str, Any]:
        """Run (or, cached-only, read) the preset's controls; each returns its finished runs (the report tabulates them)."""
        chosen = {(r.arm, r.budget): r.lr for r in runs}
        lr_of = lambda arm, budget: chosen.get((arm, budget), plan.lrs[0])
        small, full = plan.budgets[0], plan.budgets[-1]
        out: dict[str, list[ArmRun | None]] = {}
        seeds = range(plan.seeds)
        init = pretraining.checkpoint if pretraining is not None else None
        if "linear_probe" in plan.controls:
            frozen = [f"finetune.parts.{p}.mode=frozen" for p in self.parts()]
            out["linear_probe"] = [self.finetune(arm, b, s, lr_of("pretrained", b), init=init if arm == "probe-pretrained" else None, extra=frozen)
                                   for b in (small, full) for s in seeds for arm in ("probe-random", "probe-pretrained") if init is not None or arm == "probe-random"]
        if "compute_matched" in plan.controls and pretraining is not None and pretraining.steps:
            out["compute_matched"] = [self.finetune("scratch-compute-matched", b, s, lr_of("scratch", b), steps=self.steps + pretraining.steps) for b in (small, full) for s in seeds]
        if "lora" in plan.controls and init is not None:
            adapted = [f"finetune.parts.{p}.mode=lora" for p in self.parts(trainable_only=True)]
            out["lora"] = [self.finetune("pretrained-lora", b, s, lr_of("pretrained", b) * 3, init=init, extra=adapted) for b in (small, full) for s in seeds]
        if "shuffled_pairs" in plan.controls:  # the same pretraining, every pool sample's modalities re-paired with other samples'
            shuffled = self.pretraining("shuffled-pairs", "pretrain.shuffle_pairs=true")
            if shuffled is not None:
                out["shuffled_pairs"] = [self.finetune("pretrained-shuffled-pairs", b, s, lr_of("pretrained", b), init=shuffled.checkpoint) for b in (small, full) for s in seeds]
        # robustness: the full-budget arms tested with every test sample missing one modality, against pretraining
        # without whole-modality masking and fine-tuning with modality dropout
        robustness: list[ArmRun | None] = []
        if "missing_modality" in plan.controls:
            without = self.pretraining("no-whole-modality", "pretrain.whole_modality=0.0")
            if without is not None:
                out["no_whole_modality"] = [self.finetune("pretrained-no-whole-masking", full, s, lr_of("pretrained", full), init=without.checkpoint) for s in seeds]
                robustness += out["no_whole_modality"]
        if "modality_dropout" in plan.controls:  # the other side of the main arms' own setting (a recipe may already drop modalities)
            value, tag = (0.0, "no-modality-dropout") if self.built_dropout() > 0 else (MODALITY_DROPOUT, "modality-dropout")
            dropout = [f"model.fusion.modality_dropout={value}"]
            out["modality_dropout"] = [self.finetune(f"{arm}-{tag}", full, s, lr_of(arm, full), init=init if arm == "pretrained" else None, extra=dropout)
                                       for arm in ("scratch", "pretrained") for s in seeds if arm == "scratch" or init is not None]
            robustness += out["modality_dropout"]
        if robustness:
            tested = [r for r in runs if r.budget == full and r.arm in ("pretrained", "scratch")] + [r for r in robustness if r is not None]
            removable = [m for m in self.used_modalities() if m in self.domain.removable_modalities]
            scored = [self.without(r, removable) for r in tested]
            for m in removable:
                out[f"without_{m}"] = [found.get(m) for found in scored]
        if "unimodal" in plan.controls:
            out["unimodal"] = []
            for m in self.used_modalities():  # not a declared modality the model never reads (surveillance's features)
                single = self.pretraining(f"only-{m}", f"model.modalities=[{m}]")
                if single is not None:
                    out["unimodal"] += [self.finetune(f"pretrained-only-{m}", small, s, lr_of("pretrained", small), init=single.checkpoint, partial=True) for s in seeds]
        return {name: kept for name, found in out.items() if (kept := [r for r in found if r is not None])}


def primary_key(domain: Domain) -> str:
    from mmapps.train.trainer import primary_key as key

    return key(domain)


RUN_FILE = "study_run.json"


def write_run(run: ArmRun) -> None:
    """The run's figures and test records beside it (JSON), so a repeated study reuses it."""
    import dataclasses
    import json

    from mmapps.workflows.label_efficiency import to_json

    payload = {k: v for k, v in dataclasses.asdict(run).items() if k not in ("records", "run_dir")}
    payload["records"] = [dataclasses.asdict(r) for r in run.records]
    (run.run_dir / RUN_FILE).write_text(json.dumps(to_json(payload)))


def read_run(run_dir: Path) -> ArmRun | None:
    import json

    from mmapps.evaluation.records import PredictionRecord

    path = run_dir / RUN_FILE
    if not path.is_file():
        return None
    payload = json.loads(path.read_text())
    records = [PredictionRecord(**r) for r in payload.pop("records")]
    payload["metric"] = math.nan if payload["metric"] is None else payload["metric"]
    payload["val_metric"] = math.nan if payload.get("val_metric") is None else payload["val_metric"]
    return ArmRun(run_dir=run_dir, records=records, **payload)


def optimiser_steps(run_dir: Path) -> int:
    """Optimiser steps a finished run took, from its resume state (0 when it has none)."""
    from mmapps.train import checkpoint as ckpt

    path = run_dir / "checkpoints" / ckpt.TRAINING_STATE_FILE
    return int(ckpt.load_training_state(path, tensors=False).get("global_step", 0)) if path.exists() else 0


def logged_steps(run_dir: Path) -> int:
    """Optimiser steps of a pretraining from its ``logs/pretrain_steps.csv`` (one row per batch) and its ``train.grad_accum_steps``."""
    import csv

    import yaml

    path = run_dir / "logs" / "pretrain_steps.csv"
    if not path.is_file():
        return 0
    with path.open() as handle:
        batches = sum(1 for _ in csv.DictReader(handle))
    try:
        accum = int(yaml.safe_load((run_dir / "config.yaml").read_text())["train"].get("grad_accum_steps") or 1)
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
        accum = 1
    return batches // max(accum, 1)


def training_seconds(run_dir: Path) -> float:
    """Seconds spent in the training epochs (``logs/metrics.csv``), loading, testing and reporting apart."""
    import csv

    path = run_dir / "logs" / "metrics.csv"
    if not path.is_file():
        return 0.0
    with path.open() as handle:
        return sum(float(row.get("seconds") or 0.0) for row in csv.DictReader(handle))
