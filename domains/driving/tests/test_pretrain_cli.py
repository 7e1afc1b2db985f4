"""`mmapps driving pretrain --recipe smoke`, then `train --init` from it: every camera, pillar and backbone tensor arrives."""

from pathlib import Path

import pytest
import torch


@pytest.mark.slow
def test_smoke_pretrain_then_train_init(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors.torch import load_file
    from typer.testing import CliRunner

    from mmapps.cli.main import build_app
    from mmapps.models.build import build_model
    from mmapps.pretrain.init import load_init
    from mmapps.workflows.resolve import resolve_config
    from mmapps_domains.driving import domain

    monkeypatch.setenv("MMAPPS_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    app, runner = build_app(), CliRunner()
    pre = tmp_path / "pre"
    result = runner.invoke(app, ["driving", "pretrain", "--recipe", "smoke", "--out", str(pre)])
    assert result.exit_code == 0, result.output
    assert "held-out L_lidar" in result.output and "held-out L_camera" in result.output
    state = load_file(pre / "checkpoints" / "pretrained.safetensors")
    model = build_model(resolve_config(domain, "smoke"), domain)
    report = load_init(model, pre, "driving")
    parts = {k for k in model.state_dict() if not k.startswith("head.")}
    assert set(report.loaded) == parts and set(state) == parts  # every encoder/fusion tensor, nothing of the decoders
    assert all(k.startswith("head.") for k in report.new)
    for name, value in model.state_dict().items():
        if name in parts:
            assert torch.equal(value, state[name].to(value.dtype)), name
    run = tmp_path / "run"
    result = runner.invoke(app, ["driving", "train", "--recipe", "smoke", "--init", str(pre), "--out", str(run)])
    assert result.exit_code == 0, result.output
    assert f"loaded {len(parts)} tensors" in result.output and (run / "checkpoints" / "best.safetensors").is_file()
