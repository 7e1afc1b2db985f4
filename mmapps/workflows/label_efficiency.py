"""``mmapps <domain> benchmark --study label-efficiency``: does the multimodal pretraining save labels?

Protocol (fixed before any result; docs/pretraining.md):

- one pretraining on the train split (labels ignored), cached in ``<out>/pretrain``;
- budgets: absolute numbers of labelled train samples (``data.label_budget``, stratified so that
  every label with positives is in), plus ``all``; no validation labels (``label_budget_val=0``),
  a fixed number of optimiser steps (``train.max_steps``) and the last weights tested; or, in the
  ``tuned`` preset (`ValidatedSteps`), the steps chosen per run on the full validation split: up to
  a fixed maximum, validated every few steps, the best weights tested;
- paired arms: for each (budget, seed), ``scratch`` and ``pretrained`` share the labelled subset,
  the seed and hence the head initialisation (the model is built identically, then the
  pretrained arm's encoders and fusion are overwritten by the pretraining), and the same LR grid;
  with a grid, each arm's LR is chosen per budget on the (full) validation split, by the mean over
  the first ``lr_search_seeds`` seeds (all seeds when unset); the other seeds run that LR only;
- verdict: the paired 95 % bootstrap CI (test groups resampled) of the mean over seeds of
  (pretrained - scratch) on the primary metric;
- controls (``full`` preset): linear probe (pretrained vs random frozen encoders and fusion),
  compute-matched scratch (as many extra steps as the pretraining took), pairs shuffled across
  samples (the same pretraining on a pool whose modalities are re-paired across samples, so
  cross-modal objectives see no true pair: ``pretrain.shuffle_pairs``), LoRA vs full
  fine-tuning (metric, trainable parameters, peak memory, samples/s), missing-modality
  robustness with vs without whole-modality masking in the pretraining and with modality dropout in
  fine-tuning (``model.fusion.modality_dropout``), unimodal pretraining
  (one modality's encoder pretrained alone); medical: per group of findings by the modality that
  carries them (``finding_sources.json`` of the demo).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmapps.domain import Domain

# Per built-in domain: the recipe both pretraining and fine-tuning resolve, the study's overrides
# (a test split of >= 500 samples for medical and surveillance), the fixed optimiser steps, and
# the pretraining schedule. Other domains (plugins) use their quick recipe as it is.
SETUPS: dict[str, dict[str, Any]] = {
    "medical": {
        "recipe": "smoke",
        "overrides": ["data.demo_n=3200", "data.options.image_size=64", "model.dim=64", "model.encoders.image.options.width=16",
                      "model.encoders.note.options.max_length=64", "train.batch_size=16", "eval.bootstrap_resamples=0"],
        "steps": 150,
        "pretrain": ["train.epochs=4", "train.patience=null", "train.lr=1e-3", "pretrain.report_samples=0"],
    },
    "surveillance": {"recipe": "quick", "overrides": ["data.demo_n=2500", "eval.bootstrap_resamples=0"], "steps": 150, "pretrain": ["train.epochs=4", "train.patience=null"]},
    "driving": {"recipe": "quick", "overrides": ["eval.bootstrap_resamples=0"], "steps": 150, "pretrain": ["train.epochs=4", "train.patience=null"]},
}
# one test split (and one pretraining pool) for every seed, so arms and seeds are paired on it; the resume state at the end only
COMMON = ["train.progress=false", "train.tensorboard=false", "train.patience=null", "data.label_budget_val=0", "train.checkpoint_every=100000",
          "data.split_seed=0"]


@dataclass(frozen=True)
class ValidatedSteps:
    """The number of fine-tuning steps chosen on validation instead of fixed: at most `max_steps` (the cosine
    schedule's length), validated on the full validation split every `every` steps, the best weights tested,
    stopped after `patience` validations without improvement. Both arms get the same rule."""

    max_steps: int
    every: int
    patience: int

    def overrides(self) -> list[str]:
        return [f"train.max_steps={self.max_steps}", f"train.val_every_steps={self.every}", f"train.patience={self.patience}", "data.label_budget_val=null"]

    def describe(self) -> str:
        return (f"up to {self.max_steps} optimiser steps per run, the steps chosen on the full validation split (validated every {self.every} steps, "
                f"stopped after {self.patience} validations without improvement, the best weights tested)")


@dataclass(frozen=True)
class StudyPreset:
    budgets: tuple[int | None, ...]  # None = all labelled train samples
    seeds: int = 3
    lrs: tuple[float, ...] = (1e-3,)
    controls: tuple[str, ...] = ()
    resamples: int = 1000
    lr_search_seeds: int | None = None  # seeds the LR grid is searched on (validation); None = every seed
    validated_steps: ValidatedSteps | None = None  # None: the setup's fixed steps, the last weights tested
    pretrain_epochs: int | None = None  # None: the setup's pretraining schedule (SETUPS "pretrain")


PRESETS = {
    # the pipeline end to end in seconds (tests): meaningless figures
    "smoke": StudyPreset(budgets=(8, None), seeds=1, lrs=(1e-3,), controls=("linear_probe", "compute_matched", "lora", "shuffled_pairs", "missing_modality", "modality_dropout"), resamples=20),
    "quick": StudyPreset(budgets=(25, None), lrs=(1e-3,), controls=(), resamples=1000),
    # the quick arms plus the controls that reuse its pretraining (a finished quick study in --out is reused)
    "controls": StudyPreset(budgets=(25, None), lrs=(1e-3,), controls=("linear_probe", "compute_matched", "lora"), resamples=1000),
    # the LR grid searched on seed 0's validation per (arm, budget); seeds 1 and 2 replicate the chosen LR
    "full": StudyPreset(budgets=(25, 50, 100, 250, None), lrs=(3e-4, 1e-3, 3e-3, 1e-2), lr_search_seeds=1,
                        controls=("linear_probe", "compute_matched", "shuffled_pairs", "lora", "missing_modality", "modality_dropout", "unimodal")),
    # fine-tuning long enough to converge: the steps chosen per run on validation (under-training is what the
    # fixed-steps presets' compute-matched control measured), the LR grid searched on seed 0 as in `full`
    # and a pretraining five times the fixed-steps presets' (4 epochs: its held-out loss was still falling)
    "tuned": StudyPreset(budgets=(25, 100, None), lrs=(1e-3, 3e-3, 1e-2), lr_search_seeds=1, validated_steps=ValidatedSteps(1200, 50, 6),
                         pretrain_epochs=20, controls=("modality_dropout",)),
    # the tuned protocol at the quick preset's size: budgets {smallest, all}, one LR, at most 600 steps
    "quick-tuned": StudyPreset(budgets=(25, None), lrs=(1e-3,), validated_steps=ValidatedSteps(600, 50, 4), pretrain_epochs=20),
}
CONTROLS = PRESETS["full"].controls


@dataclass
class ArmRun:
    """One fine-tuning run of the study."""

    arm: str
    budget: int | None
    seed: int
    lr: float
    metric: float
    run_dir: Path
    records: list[Any] = field(default_factory=list, repr=False)
    val_metric: float = math.nan
    wall_s: float = 0.0
    cpu_s: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)


def run_label_efficiency(domain: Domain, preset: str = "quick", out_dir: Path = Path("runs/label-efficiency"), overrides: Sequence[str] = (), seeds: int | None = None,
                         cached_only: bool = False, controls: Sequence[str] | None = None) -> Path:
    """Run the study; write ``label_efficiency_<domain>.{json,md}`` in `out_dir` and return the Markdown path.

    `controls`, when given, replaces the preset's controls (names of ``CONTROLS``).

    With `cached_only`, nothing is trained: the report covers the runs already finished in `out_dir`
    (an interrupted study, or a re-rendering of a finished one, controls included), and says how
    many of the planned runs it holds.
    """
    from mmapps.errors import ConfigError
    from mmapps.workflows.label_efficiency_arms import StudyContext

    if preset not in PRESETS:
        raise ConfigError(f"--preset {preset!r} for the label-efficiency study: expected one of {', '.join(PRESETS)}")
    plan = PRESETS[preset]
    if seeds is not None:
        plan = dataclasses.replace(plan, seeds=seeds)
    if controls is not None:
        unknown = [c for c in controls if c not in CONTROLS]
        if unknown:
            raise ConfigError(f"--control {', '.join(map(repr, unknown))} for the label-efficiency study: expected one of {', '.join(CONTROLS)}")
        plan = dataclasses.replace(plan, controls=tuple(controls))
    owned = ("train.lr",) + (("train.max_steps", "train.val_every_steps", "train.patience") if plan.validated_steps else ())
    clashing = [o for o in overrides if o.split("=", 1)[0].strip() in owned]
    if clashing:  # the run folders are named by the study's values: an override would run something else under their name
        raise ConfigError(f"--set {', '.join(clashing)} for the label-efficiency study: the preset {preset!r} sets {', '.join(owned)} itself "
                          "(the LR grid, and under a tuned preset the validated steps); remove the override or choose another preset")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = StudyContext(domain, SETUPS.get(domain.name, {"recipe": "quick", "overrides": [], "steps": 150, "pretrain": []}), list(overrides), out_dir, cached_only, plan.validated_steps, plan.pretrain_epochs)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    pretraining = ctx.pretraining("default")

    def finetune(arm: str, budget: int | None, seed: int, lr: float) -> ArmRun | None:
        if arm == "pretrained" and pretraining is None:  # cached-only, the pretraining unfinished
            return None
        return ctx.finetune(arm, budget, seed, lr, init=pretraining.checkpoint if arm == "pretrained" else None, score_val=len(plan.lrs) > 1)

    runs, finished, planned = run_arms(plan, finetune)
    controls = ctx.controls(plan, pretraining, runs)
    from mmapps.workflows.label_efficiency_report import write_study

    cost = {"wall_s": time.perf_counter() - wall0, "cpu_s": time.process_time() - cpu0, "pretraining": pretraining.cost if pretraining else {}, "runs_planned": planned, "runs_finished": len(finished), "runs_reported": len(runs),
            "finetune_wall_s": sum(r.wall_s for r in finished), "finetune_cpu_s": sum(r.cpu_s for r in finished), "cached_only": cached_only}
    return write_study(ctx, plan, preset, pretraining, runs, controls, cost)


def run_arms(plan: StudyPreset, finetune: Callable[[str, int | None, int, float], ArmRun | None]) -> tuple[list[ArmRun], list[ArmRun], int]:
    """Every (budget, seed, arm) of the plan, its LR grid searched on the first ``lr_search_seeds`` seeds.

    Returns the runs kept after the LR choice (`select_lr`), every finished run (the grid's too: the cost) and the number planned;
    `finetune(arm, budget, seed, lr)` returns a finished run, or None (cached-only, not finished).
    """
    runs: list[ArmRun] = []
    planned = 0

    def run_all(seeds: range, lrs_of: Callable[[str, int | None], Sequence[float]]) -> None:
        nonlocal planned
        for budget in plan.budgets:
            for seed in seeds:
                for arm in ("scratch", "pretrained"):
                    for lr in lrs_of(arm, budget):
                        planned += 1
                        if (run := finetune(arm, budget, seed, lr)) is not None:
                            runs.append(run)

    searched = min(plan.lr_search_seeds or plan.seeds, plan.seeds)
    run_all(range(searched), lambda arm, budget: plan.lrs)
    if searched < plan.seeds:  # the other seeds replicate each (arm, budget)'s chosen LR
        chosen = {(r.arm, r.budget): r.lr for r in select_lr(runs, searched)}
        run_all(range(searched, plan.seeds), lambda arm, budget: [chosen.get((arm, budget), plan.lrs[0])])
    return select_lr(runs, searched), runs, planned


def select_lr(runs: list[ArmRun], search_seeds: int | None = None) -> list[ArmRun]:
    """Per (arm, budget), keep every run of the LR with the best mean validation metric over the seeds
    below `search_seeds` (all seeds when None): the replicating seeds never change the choice."""
    by_key: dict[tuple[str, int | None], dict[float, list[ArmRun]]] = {}
    for run in runs:
        by_key.setdefault((run.arm, run.budget), {}).setdefault(run.lr, []).append(run)
    kept: list[ArmRun] = []
    for per_lr in by_key.values():
        if len(per_lr) == 1:
            kept += next(iter(per_lr.values()))
            continue
        best = max(per_lr, key=lambda lr: _mean([r.val_metric for r in per_lr[lr] if search_seeds is None or r.seed < search_seeds]))
        kept += per_lr[best]
    return kept


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else -math.inf


def budget_name(budget: int | None) -> str:
    return "all" if budget is None else str(budget)


def to_json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
