"""The trainer end to end on the example domain: outputs, resume equality, DDP on CPU (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from mmapps.train.callbacks import StopAfterEpoch
from mmapps.workflows.resolve import resolve_config
from mmapps.workflows.run import train


def test_run_directory_contents(shapes_smoke_run):
    run = shapes_smoke_run.run_dir
    for name in ("config.yaml", "metrics.json", "predictions.jsonl", "report.md", "report.json", "splits.json", "summary.json", "checkpoints/best.safetensors", "checkpoints/resume.safetensors", "logs/metrics.csv"):
        assert (run / name).exists(), name
    assert list((run / "logs" / "tensorboard").iterdir()), "TensorBoard event files"
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["accuracy/ci_low"] <= metrics["accuracy"] <= metrics["accuracy/ci_high"]
    predictions = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == shapes_smoke_run.info["test samples"]
    assert all(abs(sum(p["scores"]) - 1) < 1e-5 for p in predictions)
    assert "## Summary" in (run / "report.md").read_text()


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def test_interrupted_then_resumed_run_ends_with_the_same_weights(shapes_domain, tmp_path):
    common = ["train.epochs=3", "train.deterministic=true", "train.progress=false", "train.tensorboard=false", "eval.bootstrap_resamples=0"]
    straight = resolve_config(shapes_domain, "smoke", overrides=common + [f"out_dir={tmp_path / 'straight'}"])
    train(straight, shapes_domain)
    interrupted = resolve_config(shapes_domain, "smoke", overrides=common + [f"out_dir={tmp_path / 'resumed'}"])
    with pytest.raises(KeyboardInterrupt):
        train(interrupted, shapes_domain, callbacks=[StopAfterEpoch(0)])
    assert not (tmp_path / "resumed" / "metrics.json").exists()
    train(interrupted, shapes_domain, resume=True)
    a = _weights(tmp_path / "straight" / "checkpoints" / "last.safetensors")
    b = _weights(tmp_path / "resumed" / "checkpoints" / "last.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    rows = (tmp_path / "resumed" / "logs" / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 3, "one CSV row per epoch after resume"


@pytest.mark.slow
def test_two_process_cpu_ddp_gathers_every_test_sample_once(shapes_site, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shapes_site), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533", "-m", "mmapps", "shapes", "train", "--recipe", "smoke", "--out", str(out), "--set", "train.progress=false", "--set", "data.demo_n=90"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    predictions = [json.loads(line)["sample_id"] for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == len(set(predictions)) == 18  # 20% of 90, none duplicated by sampler padding


def test_val_every_steps_validates_at_each_multiple_and_the_end_and_tests_the_best_of_those(shapes_domain, tmp_path):
    import csv

    out = tmp_path / "run"
    cfg = resolve_config(shapes_domain, "smoke", overrides=["train.max_steps=10", "train.max_steps_per_epoch=1", "train.val_every_steps=4", "train.progress=false",
                                                             "train.tensorboard=false", "eval.bootstrap_resamples=0", f"out_dir={out}"])
    result = train(cfg, shapes_domain)
    rows = list(csv.DictReader((out / "logs" / "metrics.csv").open()))
    assert len(rows) == 10, "one row per one-step epoch"
    validated = {int(r["epoch"]): float(r["val/accuracy"]) for r in rows if r.get("val/accuracy")}
    assert sorted(validated) == [3, 7, 9], "the epochs ending at steps 4 and 8, and the last (10); the first validation widened the CSV header"
    best_epoch = max(validated, key=lambda e: (validated[e], -e))  # the first of equal values is kept
    assert result.info["best epoch"] == best_epoch + 1
    assert result.info["best step"] == {3: 4, 7: 8, 9: 10}[best_epoch]
