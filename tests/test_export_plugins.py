"""A third-party plugin (the pip-installed shapes example: fixed image + tabular, multi-class) exports
through the same verb, and its export evaluates on onnxruntime with the PyTorch checkpoint's metrics."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


def test_shapes_plugin_exports_and_evaluates_on_onnxruntime(shapes_domain, shapes_smoke_run, tmp_path):
    from mmapps.export import export_checkpoint, load_export, read_triton_config
    from mmapps.workflows.run import evaluate

    ckpt = shapes_smoke_run.run_dir / "checkpoints" / "best.safetensors"
    result = export_checkpoint(ckpt, shapes_domain, tmp_path / "export", log=lambda line: None)
    assert result.parity.ok and result.parity.flipped == 0 and result.parity.metric == "accuracy"
    assert result.parity.metric_onnx == pytest.approx(result.parity.metric_torch)
    side = json.loads(result.sidecar.read_text())
    assert {i["name"] for i in side["inputs"]} == {"image", "image_present", "measurements", "measurements_present"}
    assert side["thresholds"] == {"shape": {}}, "multi-class decides by arg-max"
    assert side["labels"]["shape"] == list(shapes_domain.tasks[0].labels)
    config = read_triton_config(tmp_path / "export" / "triton" / "shapes" / "config.pbtxt")
    assert config.name == "shapes" and [i.name for i in config.input] == [i["name"] for i in side["inputs"]]
    assert load_export(tmp_path / "export").sidecar.domain == "shapes"
    torch_run = evaluate(ckpt, shapes_domain, tmp_path / "eval-torch")
    onnx_run = evaluate(result.model, shapes_domain, tmp_path / "eval-onnx")
    assert set(onnx_run.metrics) == set(torch_run.metrics)
    for key, value in torch_run.metrics.items():
        if isinstance(value, float):
            assert onnx_run.metrics[key] == pytest.approx(value, abs=1e-4), key
