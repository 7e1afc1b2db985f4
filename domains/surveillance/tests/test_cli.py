"""End to end through the CLI (Typer's CliRunner): train the smoke recipe, then watch a test clip.

The scores ``watch`` streams equal the ones ``train``'s evaluation wrote for the same clip.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mmapps.cli.verbs import build_domain_app
from mmapps.plugins import discover_domains
from mmapps_domains.surveillance.demo import write_demo_data


@pytest.mark.slow
def test_train_smoke_then_watch(tmp_path: Path) -> None:
    entry = next(e for e in discover_domains() if e.name == "surveillance")
    app = build_domain_app(entry)
    root = write_demo_data(tmp_path / "demo", n=5, seed=11)
    runner = CliRunner()
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "--recipe", "smoke", "--data", str(root), "--out", str(run)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert "frame/auc" in metrics or "frame/positive_rate" in metrics
    assert list((run / "figures").glob("timeline_*.png"))
    predicted = {json.loads(line)["clip"]: json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()}
    clip_id = sorted(predicted)[0]
    manifest = {r["id"]: r for r in map(json.loads, (root / "manifest.jsonl").read_text().splitlines())}
    row = manifest[clip_id]
    args = ["watch", str(root / row["clip"]), "--checkpoint", str(run / "checkpoints" / "best.safetensors"),
            "--out", str(tmp_path / "alerts.jsonl"), "--scores", str(tmp_path / "scores.jsonl"), "--threshold", "0.3"]
    if row.get("chat"):
        args += ["--chat", str(root / row["chat"])] + (["--start-time", row["start_time"]] if row.get("start_time") else [])
    if row.get("audio"):
        args += ["--audio", str(root / row["audio"])]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    streamed = np.array([json.loads(line)["scores"] for line in (tmp_path / "scores.jsonl").read_text().splitlines()])
    offline = np.array([predicted[clip_id]["scores"][c] for c in ("fight", "fall", "intrusion")]).T
    np.testing.assert_allclose(streamed, offline, atol=1e-5)
    for line in (tmp_path / "alerts.jsonl").read_text().splitlines():
        alert = json.loads(line)
        assert set(alert) == {"start", "end", "class", "score"} and alert["score"] >= 0.3
    bad_out = tmp_path / "bad.jsonl"
    bad = runner.invoke(app, ["watch", str(tmp_path / "nope.mp4"), "--checkpoint", str(run / "checkpoints" / "best.safetensors"), "--out", str(bad_out)])
    assert bad.exit_code != 0 and "nope.mp4" in bad.output and not bad_out.exists()
