"""The label-efficiency study's statistics (paired bootstrap, verdict rule, LR choice, per-group AUROC) and a smoke study end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mmapps.evaluation.records import PredictionRecord
from mmapps.workflows.label_efficiency import PRESETS, ArmRun, StudyPreset, select_lr
from mmapps.workflows.label_efficiency_report import verdict_text
from mmapps.workflows.label_efficiency_stats import (
    PairedDifference,
    macro_auroc_of,
    paired_difference,
)


def records(values, groups=None):
    return [PredictionRecord(f"s{i}", groups[i] if groups else f"g{i}", "t", {"v": float(v)}) for i, v in enumerate(values)]


def mean_v(rows):
    return float(np.mean([r.prediction["v"] for r in rows]))


def test_paired_difference_is_paired_over_the_same_resampled_groups():
    rng = np.random.default_rng(0)
    a_vals = rng.normal(size=60)
    a = [records(a_vals), records(a_vals + 0.1)]
    b = [records(a_vals - 0.2), records(a_vals - 0.1)]  # every sample's difference is exactly 0.2
    d = paired_difference(mean_v, a, b, resamples=200)
    assert d.estimate == pytest.approx(0.2)
    assert d.low == pytest.approx(0.2) and d.high == pytest.approx(0.2)  # paired: the sample variance cancels
    noisy = paired_difference(mean_v, [records(a_vals)], [records(rng.normal(size=60))], resamples=300)
    assert noisy.low < noisy.estimate < noisy.high and noisy.high - noisy.low > 0.3


def test_groups_are_resampled_whole():
    vals = np.r_[np.zeros(50), np.ones(50)]
    groups = ["g0"] * 50 + ["g1"] * 50  # two groups: a resample holds 0, 1 or 2 copies of each
    d = paired_difference(mean_v, [records(vals, groups)], [records(np.zeros(100), groups)], resamples=400)
    assert d.estimate == pytest.approx(0.5) and d.low == pytest.approx(0.0) and d.high == pytest.approx(1.0)


def test_verdict_rule():
    plan = StudyPreset(budgets=(25, 50, None))
    win = [PairedDifference(0.05, 0.01, 0.09, 100), PairedDifference(0.04, 0.005, 0.08, 100), PairedDifference(0.0, -0.01, 0.01, 100)]
    assert verdict_text(plan, win).startswith("pretraining pays off")
    lose = [PairedDifference(0.02, -0.01, 0.05, 100)] + win[1:]
    assert "does not pass" in verdict_text(plan, lose) and "budget 25: +0.0200 [-0.0100, +0.0500]" in verdict_text(plan, lose)
    hurt_at_all = win[:2] + [PairedDifference(-0.05, -0.08, -0.02, 100)]
    assert "does not pass" in verdict_text(plan, hurt_at_all)


def test_lr_is_chosen_per_arm_and_budget_on_validation():
    runs = [ArmRun(arm, 25, s, lr, 0.0, None, val_metric=v) for arm, lr, v in
            [("scratch", 1e-3, 0.6), ("scratch", 3e-3, 0.7), ("pretrained", 1e-3, 0.8), ("pretrained", 3e-3, 0.5)] for s in range(2)]
    kept = select_lr(runs)
    assert {(r.arm, r.lr) for r in kept} == {("scratch", 3e-3), ("pretrained", 1e-3)} and len(kept) == 4


def test_group_macro_auroc_against_scikit_learn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    y = (rng.random((80, 3)) < 0.4).astype(float)
    y[:5, 1] = math.nan  # unlabelled entries are skipped
    s = rng.random((80, 3)) + 0.5 * np.nan_to_num(y)
    rows = [PredictionRecord(f"s{i}", f"g{i}", "t", {"scores": s[i].tolist()}, y[i].tolist()) for i in range(80)]
    keep = ~np.isnan(y[:, 1])
    expected = np.mean([roc_auc_score(y[:, 0], s[:, 0]), roc_auc_score(y[keep, 1], s[keep, 1])])
    assert macro_auroc_of([0, 1])(rows) == pytest.approx(expected)


def test_presets_follow_the_protocol():
    quick, full = PRESETS["quick"], PRESETS["full"]
    assert quick.budgets == (25, None) and quick.seeds == 3 and full.seeds == 3
    assert full.budgets == (25, 50, 100, 250, None) and len(full.lrs) > 1
    assert {"linear_probe", "compute_matched", "shuffled_pairs", "lora", "missing_modality", "unimodal"} <= set(full.controls)


@pytest.mark.slow
def test_smoke_study_end_to_end(shapes_domain, tmp_path):
    import yaml

    from mmapps.workflows.label_efficiency import run_label_efficiency

    md = run_label_efficiency(shapes_domain, "smoke", tmp_path, ["data.demo_n=80", "train.max_steps=2", "train.epochs=1", "pretrain.statistics_batches=1"])
    payload = json.loads((tmp_path / "label_efficiency_shapes.json").read_text())
    assert [r["budget"] for r in payload["rows"]] == ["8", "all"]
    assert {"linear_probe", "compute_matched", "lora", "shuffled_pairs", "modality_dropout"} <= set(payload["controls"])
    control_arm = next(c["arm"] for c in payload["controls"]["modality_dropout"] if c["arm"].startswith("pretrained-"))
    rate = lambda arm: yaml.safe_load((tmp_path / "runs" / f"{arm}-ball-s0-lr0.001" / "config.yaml").read_text())["model"]["fusion"]["modality_dropout"]
    assert rate(control_arm) != rate("pretrained"), "the control fine-tunes on the other side of the main arms' modality dropout"
    text = md.read_text()
    assert "Verdict" in text and "pretrained - scratch" in text and "## Cost" in text and "CI width" in text and "## Control: shuffled pairs" in text
    runs = {(r["arm"], r["budget"]) for r in payload["runs"]}
    assert runs == {("scratch", "8"), ("pretrained", "8"), ("scratch", "all"), ("pretrained", "all")}
    shuffled = {(c["arm"], c["budget"], c["reference"]) for c in payload["controls"]["shuffled_pairs"]}
    assert shuffled == {("pretrained-shuffled-pairs", "8", "pretrained"), ("pretrained-shuffled-pairs", "all", "pretrained")}
    pools = {name: json.loads((tmp_path / name / "pool.json").read_text()) for name in ("pretrain-default", "pretrain-shuffled-pairs")}
    assert not pools["pretrain-default"]["pairs shuffled across samples"] and pools["pretrain-shuffled-pairs"]["pairs shuffled across samples"]  # only in that arm
    assert json.loads((tmp_path / "runs" / "pretrained-shuffled-pairs-b8-s0-lr0.001" / "study_run.json").read_text())["info"]["init"] == str(tmp_path / "pretrain-shuffled-pairs" / "checkpoints" / "pretrained.safetensors")
    again = run_label_efficiency(shapes_domain, "smoke", tmp_path, ["data.demo_n=80", "train.max_steps=2", "train.epochs=1", "pretrain.statistics_batches=1"], cached_only=True)
    rerendered = json.loads((tmp_path / "label_efficiency_shapes.json").read_text())
    removable = shapes_domain.removable_modalities
    assert removable and {f"without_{m}" for m in removable} <= set(payload["controls"]) and "## Control: missing modality" in text
    for m in removable:  # the full-budget arms, each tested with m absent from every test sample
        tested = {(c["arm"], c["reference"]) for c in payload["controls"][f"without_{m}"]}
        assert tested == {("scratch", "pretrained"), ("pretrained-no-whole-masking", "pretrained"), (control_arm.replace("pretrained-", "scratch-", 1), "pretrained"), (control_arm, "pretrained")}
        main = json.loads((tmp_path / "runs" / "pretrained-ball-s0-lr0.001" / "study_run.json").read_text())
        saved = json.loads((tmp_path / "runs" / "pretrained-ball-s0-lr0.001" / f"test-without-{m}" / "study_run.json").read_text())
        assert saved["info"]["removed at test"] == m
        assert sorted(r["sample_id"] for r in saved["records"]) == sorted(r["sample_id"] for r in main["records"])  # the same test samples
    assert again == md and rerendered["rows"] == payload["rows"] and rerendered["controls"] == payload["controls"] and rerendered["cost"]["cached_only"]
    run_label_efficiency(shapes_domain, "smoke", tmp_path, ["data.demo_n=80", "train.max_steps=2", "train.epochs=1", "pretrain.statistics_batches=1"], cached_only=True,
                         controls=["shuffled_pairs"])
    only = json.loads((tmp_path / "label_efficiency_shapes.json").read_text())
    assert set(only["controls"]) == {"shuffled_pairs"} and only["controls"]["shuffled_pairs"] == payload["controls"]["shuffled_pairs"]
    bare = run_label_efficiency(shapes_domain, "smoke", tmp_path, ["data.demo_n=80", "train.max_steps=2", "train.epochs=1", "pretrain.statistics_batches=1"], cached_only=True,
                                controls=[]).read_text()
    assert "No control was planned in this study." in bare and "## Control:" not in bare


def test_an_unknown_control_is_refused_before_anything_runs(shapes_domain, tmp_path):
    from mmapps.errors import ConfigError
    from mmapps.workflows.label_efficiency import CONTROLS, run_label_efficiency

    with pytest.raises(ConfigError, match="'linear-probe'.*expected one of linear_probe"):
        run_label_efficiency(shapes_domain, "quick", tmp_path / "study", controls=["linear-probe"])
    assert not (tmp_path / "study").exists() and "unimodal" in CONTROLS
    with pytest.raises(ConfigError, match="train.lr=0.01.*sets train.lr"):
        run_label_efficiency(shapes_domain, "quick", tmp_path / "study", ["train.lr=0.01"])
    with pytest.raises(ConfigError, match="train.max_steps=50"):
        run_label_efficiency(shapes_domain, "tuned", tmp_path / "study", ["train.max_steps=50"])
    assert not (tmp_path / "study").exists()


def test_the_lr_grid_is_searched_on_the_first_seeds_and_the_others_replicate_the_choice():
    """`run_arms`: seed 0 runs every LR of every arm and budget; seeds 1-2 run the LR its validation chose."""
    from mmapps.workflows.label_efficiency import run_arms

    best = {"scratch": 3e-3, "pretrained": 3e-4}
    calls: list[tuple] = []

    def finetune(arm, budget, seed, lr):
        calls.append((arm, budget, seed, lr))
        # the replicating seeds score the chosen LR low on validation: they must not turn the choice over
        return ArmRun(arm, budget, seed, lr, 0.5, None, val_metric=(1.0 if seed == 0 else 0.0) if lr == best[arm] else 0.5)

    plan = StudyPreset(budgets=(25, None), seeds=3, lrs=(3e-4, 1e-3, 3e-3), lr_search_seeds=1)
    kept, finished, planned = run_arms(plan, finetune)
    assert planned == len(calls) == len(finished) == 2 * 2 * 3 + 2 * 2 * 2
    assert {c for c in calls if c[2] == 0} == {(a, b, 0, lr) for a in best for b in (25, None) for lr in plan.lrs}
    assert {c for c in calls if c[2] > 0} == {(a, b, s, best[a]) for a in best for b in (25, None) for s in (1, 2)}
    assert {(r.arm, r.budget, r.seed, r.lr) for r in kept} == {(a, b, s, best[a]) for a in best for b in (25, None) for s in range(3)}
    every, _, planned_all = run_arms(StudyPreset(budgets=(25,), seeds=2, lrs=(1e-3, 3e-3)), finetune)
    assert planned_all == 8 and len(every) == 4  # unset: every seed searches the grid


def test_a_tuned_run_chooses_its_steps_on_the_full_validation_split_and_tests_those_weights(shapes_domain, tmp_path):
    import csv

    import yaml

    from mmapps.workflows.label_efficiency import ValidatedSteps
    from mmapps.workflows.label_efficiency_arms import StudyContext

    assert PRESETS["tuned"].validated_steps is not None and 1e-2 in PRESETS["tuned"].lrs and PRESETS["tuned"].pretrain_epochs
    assert PRESETS["quick-tuned"].budgets == PRESETS["quick"].budgets and PRESETS["quick-tuned"].validated_steps is not None
    setup = {"recipe": "smoke", "overrides": ["data.demo_n=80", "eval.bootstrap_resamples=0"], "steps": 150, "pretrain": []}
    ctx = StudyContext(shapes_domain, setup, [], tmp_path, validated_steps=ValidatedSteps(max_steps=6, every=2, patience=2))
    run = ctx.finetune("scratch", 8, 0, 1e-3, score_val=True)
    assert run.run_dir.name == "scratch-b8-s0-lr0.001-upto6"
    cfg = yaml.safe_load((run.run_dir / "config.yaml").read_text())
    assert cfg["train"]["max_steps"] == 6 and cfg["train"]["val_every_steps"] == 2 and cfg["data"]["label_budget_val"] is None
    rows = [r for r in csv.DictReader((run.run_dir / "logs" / "metrics.csv").open()) if r.get("val/accuracy")]
    best = max(float(r["val/accuracy"]) for r in rows)
    assert run.info["best step"] in (2, 4, 6) and run.info["steps run"] >= run.info["best step"]
    assert run.val_metric == pytest.approx(best), "the tested (best) weights are the ones validation chose"
    fixed = StudyContext(shapes_domain, setup, [], tmp_path).finetune("scratch", 8, 0, 1e-3, steps=3)
    assert fixed.run_dir.name == "scratch-b8-s0-lr0.001" and fixed.info["steps run"] == 3
