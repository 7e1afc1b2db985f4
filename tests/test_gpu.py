"""CUDA paths: bf16 autocast training and the same checkpoint reloaded on the CPU."""

import pytest
import torch


@pytest.mark.gpu
def test_bf16_training_on_cuda_and_cpu_reload(shapes_domain, tmp_path):
    from mmapps.workflows.resolve import resolve_config
    from mmapps.workflows.run import evaluate, train

    cfg = resolve_config(shapes_domain, "smoke", overrides=[f"out_dir={tmp_path / 'gpu'}", "train.device=cuda", "train.progress=false"])
    result = train(cfg, shapes_domain)
    assert 0.0 <= result.metrics["accuracy"] <= 1.0
    from mmapps.train.runtime import setup_runtime

    assert setup_runtime(cfg.train).autocast_dtype == torch.bfloat16
    cpu = evaluate(tmp_path / "gpu" / "checkpoints" / "best.safetensors", shapes_domain, out_dir=tmp_path / "cpu", overrides={"train": {"device": "cpu"}})
    assert abs(cpu.metrics["accuracy"] - result.metrics["accuracy"]) < 0.1
