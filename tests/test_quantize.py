"""int8 quantisation: static QDQ per-channel on convolutions, dynamic int8 on constant-weight MatMul/Gemm
only (attention products and softmax stay fp32), MACs per node against a hand count, and exported
models quantised through `export --quantize` run and report their metric; static without data is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from mmapps.errors import ConfigError


class TinyAttention(nn.Module):
    """A conv stem, then single-head self-attention: Q·Kᵀ and softmax·V are MatMuls without constant weights."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.q, self.k, self.v = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.conv(images).flatten(2).transpose(1, 2)  # (B, 36, 8)
        attn = torch.softmax(self.q(x) @ self.k(x).transpose(1, 2) / 8**0.5, dim=-1)  # (B, 36, 36)
        return attn @ self.v(x)


def _export(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "tiny.onnx"
    program = torch.onnx.export(TinyAttention().eval(), (torch.randn(2, 3, 8, 8),), dynamo=True, input_names=["images"], output_names=["out"],
                                dynamic_shapes={"images": {0: torch.export.Dim("n", min=1, max=64)}}, opset_version=18)
    program.save(str(path))
    return path


def _ops(path: Path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def test_node_macs_equal_a_hand_count(tmp_path: Path) -> None:
    from mmapps.export.quantize_ops import node_macs

    model = onnx.load(str(_export(tmp_path)))
    macs = node_macs(model, {"images": np.zeros((2, 3, 8, 8), np.float32)})
    by_op: dict[str, int] = {}
    for node in model.graph.node:
        if node.name in macs:
            by_op[node.op_type] = by_op.get(node.op_type, 0) + macs[node.name]
    T, D = 36, 8
    assert by_op["Conv"] == 2 * 8 * 3 * 3 * 3 * T
    linear_and_products = 2 * (3 * T * D * D + 2 * T * T * D)
    assert by_op.get("MatMul", 0) + by_op.get("Gemm", 0) == linear_and_products


def test_dynamic_int8_quantises_weights_only_and_never_conv(tmp_path: Path) -> None:
    D_OUT = 8
    from mmapps.export.quantize import quantize_graph

    source = _export(tmp_path)
    feeds = {"images": np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)}
    plan = quantize_graph(source, tmp_path / "dyn.onnx", "dynamic", feeds, [])
    ops = _ops(tmp_path / "dyn.onnx")
    assert "ConvInteger" not in ops and "Conv" in ops and "QuantizeLinear" not in ops
    assert plan["int8_ops"] == {"MatMul": 3} or plan["int8_ops"] == {"Gemm": 3} or sum(plan["int8_ops"].values()) == 3
    assert plan["fp32_ops"].get("MatMul") == 2 and plan["fp32_ops"].get("Conv") == 1  # Q·Kᵀ and probabilities·V stay fp32
    assert ops.count("Softmax") == 1 and ops.count("MatMul") >= 2
    import onnx

    graph = onnx.load(str(tmp_path / "dyn.onnx")).graph
    dims = {t.name: list(t.dims) for t in graph.initializer}
    zero_points = [dims.get(n.input[3]) for n in graph.node if n.op_type == "MatMulInteger" and len(n.input) > 3]
    assert zero_points and all(z == [D_OUT] for z in zero_points), zero_points  # one scale and zero point per output channel
    T, D = 36, 8
    assert plan["int8_mac_share"] == pytest.approx(3 * T * D * D / (8 * 3 * 9 * T + 3 * T * D * D + 2 * T * T * D))


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_static_int8_is_per_channel_qdq_on_convolutions_and_stays_close(tmp_path: Path, method: str) -> None:
    import onnxruntime as ort

    from mmapps.export.quantize import quantize_graph

    source = _export(tmp_path)
    rng = np.random.default_rng(0)
    calibration = [{"images": rng.standard_normal((4, 3, 8, 8)).astype(np.float32)} for _ in range(4)]
    plan = quantize_graph(source, tmp_path / "static.onnx", "static", calibration[0], calibration, method)
    model = onnx.load(str(tmp_path / "static.onnx"))
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    producers = {o: n for n in model.graph.node for o in n.output}
    weight_dq = producers[conv.input[1]]
    assert weight_dq.op_type == "DequantizeLinear" and producers[conv.input[0]].op_type == "DequantizeLinear"
    scales = next(t for t in model.graph.initializer if t.name == weight_dq.input[1])
    assert list(scales.dims) == [8], "one weight scale per output channel"
    assert plan["calibration"] == {"method": method, "samples": 16, "per_channel_weights": True} and plan["int8_ops"].get("Conv") == 1
    x = {"images": rng.standard_normal((3, 3, 8, 8)).astype(np.float32)}
    ref = ort.InferenceSession(str(source)).run(None, x)[0]
    got = ort.InferenceSession(str(tmp_path / "static.onnx")).run(None, x)[0]
    # int8 noise, not a broken graph: the outputs still follow the fp32 ones closely
    assert np.corrcoef(ref.ravel(), got.ravel())[0, 1] > 0.9
    assert np.abs(ref - got).mean() < 0.25 * np.abs(ref).mean()


@pytest.mark.slow
def test_exported_plugin_quantises_statically_runs_and_reports_its_metric(shapes_domain, shapes_smoke_run, tmp_path: Path) -> None:
    from mmapps.export import export_checkpoint, load_export
    from mmapps.workflows.run import evaluate

    ckpt = shapes_smoke_run.run_dir / "checkpoints" / "best.safetensors"
    result = export_checkpoint(ckpt, shapes_domain, tmp_path / "export", quantize="static", calibration_samples=32, log=lambda line: None)
    side = json.loads(result.sidecar.read_text())
    q = side["quantized"]
    assert q["model_file"] == "model.int8.onnx" and "model.int8.onnx" in side["artifacts"]
    assert q["int8_ops"].get("Conv", 0) > 0 and 0 < q["int8_mac_share"] <= 1
    assert q["validation"]["metric"] == "accuracy" and q["validation"]["int8"] is not None
    assert q["sizes"]["int8_bytes"] < q["sizes"]["fp32_bytes"]
    int8 = load_export(tmp_path / "export" / "model.int8.onnx")
    assert int8.model_path.name == "model.int8.onnx"
    run = evaluate(tmp_path / "export" / "model.int8.onnx", shapes_domain, tmp_path / "eval-int8")
    assert 0.0 <= run.metrics["accuracy"] <= 1.0


@pytest.mark.slow
def test_static_without_calibration_data_is_refused_and_writes_nothing(shapes_domain, shapes_smoke_run, tmp_path: Path) -> None:
    from mmapps.export import export_checkpoint

    ckpt = shapes_smoke_run.run_dir / "checkpoints" / "best.safetensors"
    with pytest.raises(ConfigError, match="no calibration data"):
        export_checkpoint(ckpt, shapes_domain, tmp_path / "export", quantize="static", calibration_samples=0, log=lambda line: None)
    assert not (tmp_path / "export").exists() and not list(tmp_path.glob(".*"))


def test_unknown_quantisation_options_are_refused() -> None:
    from mmapps.export.quantize import quantize_export

    with pytest.raises(ConfigError, match="--quantize 'int4'"):
        quantize_export(Path("."), None, None, "int4", 8, lambda line: None)
    with pytest.raises(ConfigError, match="--calibration-method"):
        quantize_export(Path("."), None, None, "static", 8, lambda line: None, calibration_method="kl")
