"""One smoke `train` per fine-tuning mode on the example plugin: merged checkpoints `evaluate` accepts,
adapters-only files, trainable counts in the report, a label budget with fixed optimiser steps."""

from __future__ import annotations

import pytest
import torch

from mmapps.train import checkpoint as ckpt

MODES = ["full", "frozen", "last_n", "lora", "ia3"]


def _train(shapes_domain, out, overrides):
    from mmapps.workflows.resolve import resolve_config
    from mmapps.workflows.run import train

    cfg = resolve_config(shapes_domain, "smoke", overrides=[f"out_dir={out}", "train.progress=false", "train.tensorboard=false", *overrides])
    return cfg, train(cfg, shapes_domain)


@pytest.mark.parametrize("mode", MODES)
def test_smoke_train_per_mode(shapes_domain, tmp_path, mode):
    from mmapps.models.build import build_model
    from mmapps.train.runtime import seed_everything
    from mmapps.workflows.run import evaluate

    parts = ["image", "measurements", "fusion"]
    cfg, result = _train(shapes_domain, tmp_path / "run", [f"finetune.parts.{p}.mode={mode}" for p in parts] + ["finetune.parts.image.rank=2"])
    assert result.metrics and "trainable parameters" in result.report.read_text()
    best = tmp_path / "run" / "checkpoints" / "best.safetensors"
    state, _ = ckpt.read_inference_checkpoint(best)
    assert not any("lora_" in k or "ia3_" in k or "base_layer" in k for k in state)  # merged: a normal checkpoint
    seed_everything(cfg.seed)
    initial = build_model(cfg, shapes_domain).state_dict()
    assert set(state) == set(initial)
    changed = {k for k in state if not torch.equal(state[k], initial[k])}
    assert any(k.startswith("heads.") for k in changed)  # heads always train
    encoders = {k for k in state if k.startswith("encoders.")}
    if mode == "frozen":
        assert not (changed & (encoders | {k for k in state if k.startswith("fusion.")}))
    else:
        assert changed & encoders
    adapters = tmp_path / "run" / "checkpoints" / "best.adapters.safetensors"
    assert adapters.exists() == (mode in ("lora", "ia3"))
    if mode in ("lora", "ia3"):  # the adapters-only file merged onto its base is the checkpoint export and evaluate take
        from mmapps.finetune import apply_finetune, has_adapters, load_adapters, unload_adapters

        seed_everything(cfg.seed)
        rebuilt = build_model(cfg, shapes_domain)  # the base it started from (no --init: the seeded initial weights)
        apply_finetune(rebuilt, cfg.finetune)
        load_adapters(rebuilt, adapters)
        merged = unload_adapters(rebuilt)
        assert not has_adapters(merged) and set(merged.state_dict()) == set(state)
        for key, value in merged.state_dict().items():
            assert torch.allclose(value, state[key], atol=1e-6), key
    evaluated = evaluate(best, shapes_domain, tmp_path / "eval")
    primary = shapes_domain.primary_task.primary_metric
    assert evaluated.metrics[primary] == pytest.approx(result.metrics[primary], abs=1e-6)


def test_label_budget_and_max_steps(shapes_domain, tmp_path):
    _, result = _train(shapes_domain, tmp_path / "run", ["data.label_budget=12", "data.label_budget_val=0", "train.max_steps=3", "train.batch_size=4"])
    assert result.info["train samples"] == 12 and result.info["val samples"] == 0
    assert result.info["labelled train samples"].startswith("12 of ")
    state = ckpt.load_training_state(tmp_path / "run" / "checkpoints" / ckpt.TRAINING_STATE_FILE, tensors=False)
    assert int(state["global_step"]) == 3  # 3 batches of 4 = one epoch of the 12 labelled samples; epochs=2 ignored


def test_info_recipe_prints_trainable_parameters(shapes_domain):
    from typer.testing import CliRunner

    from mmapps.cli.main import build_app

    result = CliRunner().invoke(build_app(), ["shapes", "info", "--recipe", "smoke"])
    assert result.exit_code == 0, result.output
    assert "parameters (recipe smoke" in result.output and "trainable" in result.output and "fusion" in result.output


def test_info_shows_trainable_and_total_parameters_under_lora(shapes_domain):
    import re

    from typer.testing import CliRunner

    from mmapps.cli.main import build_app

    def counts(*extra):
        result = CliRunner().invoke(build_app(), ["shapes", "info", "--recipe", "smoke", *extra])
        assert result.exit_code == 0, result.output
        return {m.group(1): (int(m.group(2).replace(",", "")), int(m.group(3).replace(",", "")))
                for m in re.finditer(r"^(\w+)\s+([\d,]+) of ([\d,]+) trainable", result.output, flags=re.M)}

    full = counts()
    lora = counts("--set", "finetune.parts.fusion.mode=lora", "--set", "finetune.parts.image.mode=lora", "--set", "finetune.parts.image.rank=2")
    assert lora["model"][1] > full["model"][1]  # the adapters add parameters to the total
    for part in ("fusion", "image"):
        assert 0 < lora[part][0] < 0.5 * full[part][0]  # only the adapters train
    assert lora["heads"] == full["heads"]  # heads always trained
