"""`benchmark`: every fusion and baseline over seeds, with missing-modality robustness."""

import json

import pytest


@pytest.mark.slow
def test_benchmark_table_covers_every_fusion_and_baseline(shapes_domain, tmp_path):
    from mmapps.workflows.benchmark import run_benchmark

    path = run_benchmark(shapes_domain, preset="quick", seeds=2, out_dir=tmp_path, overrides=["train.epochs=1", "data.demo_n=80", "train.progress=false", "train.tensorboard=false", "eval.bootstrap_resamples=20"])
    data = json.loads((tmp_path / "benchmark.json").read_text())
    names = [row["name"] for row in data["rows"]]
    assert names == ["concat", "late", "attention", "gated", "lmf", "image only", "measurements only"]
    for row in data["rows"]:
        assert len(row["values"]) == 2
        if row["kind"] == "fusion":
            assert set(row["removed"]) == {"image", "measurements"} and len(row["removed"]["image"]) == 2
    text = path.read_text()
    assert "± " in text and "without image" in text and (tmp_path / "benchmark.png").exists()
