"""`mmapps surveillance pretrain --recipe smoke` -> `train --init` -> `watch`: the pretrained model streams exactly."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mmapps.cli.verbs import build_domain_app
from mmapps.plugins import discover_domains
from mmapps_domains.surveillance.demo import write_demo_data


@pytest.mark.slow
def test_smoke_pretrain_train_init_then_watch(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from mmapps.models.build import build_model
    from mmapps.pretrain.init import load_init
    from mmapps.workflows.resolve import resolve_config
    from mmapps_domains.surveillance import domain

    app = build_domain_app(next(e for e in discover_domains() if e.name == "surveillance"))
    root = write_demo_data(tmp_path / "demo", n=6, seed=5)
    runner = CliRunner()
    pre = tmp_path / "pre"
    result = runner.invoke(app, ["pretrain", "--recipe", "smoke", "--data", str(root), "--out", str(pre)])
    assert result.exit_code == 0, result.output
    assert "held-out L_video" in result.output
    state = load_file(pre / "checkpoints" / "pretrained.safetensors")
    model = build_model(resolve_config(domain, "smoke"), domain)
    report = load_init(model, pre, "surveillance")
    parts = {k for k in model.state_dict() if k.startswith(("core.encoders.", "core.fusion."))}
    assert set(report.loaded) == parts == set(state)  # every encoder and fusion tensor, no decoder
    assert report.new and all(k.startswith("core.heads.") for k in report.new)
    for name in parts:
        assert torch.equal(model.state_dict()[name], state[name].to(model.state_dict()[name].dtype)), name

    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "--recipe", "smoke", "--init", str(pre), "--data", str(root), "--out", str(run)])
    assert result.exit_code == 0, result.output
    predicted = {json.loads(line)["clip"]: json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()}
    clip_id = sorted(predicted)[0]
    row = {r["id"]: r for r in map(json.loads, (root / "manifest.jsonl").read_text().splitlines())}[clip_id]
    args = ["watch", str(root / row["clip"]), "--checkpoint", str(run / "checkpoints" / "best.safetensors"), "--out", str(tmp_path / "alerts.jsonl"),
            "--scores", str(tmp_path / "scores.jsonl")]
    if row.get("chat"):
        args += ["--chat", str(root / row["chat"])] + (["--start-time", row["start_time"]] if row.get("start_time") else [])
    if row.get("audio"):
        args += ["--audio", str(root / row["audio"])]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    streamed = np.array([json.loads(line)["scores"] for line in (tmp_path / "scores.jsonl").read_text().splitlines()])
    offline = np.array([predicted[clip_id]["scores"][c] for c in ("fight", "fall", "intrusion")]).T
    np.testing.assert_allclose(streamed, offline, atol=1e-5)  # window by window = whole clip, after pretraining too
