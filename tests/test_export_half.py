"""``export --precision fp16`` and the quantisation options from the verb factory: the half graph has
float16 weights with fp32 inputs and outputs, is hashed into the sidecar and checked against PyTorch at the
looser tolerance; the int8 sensitivity search writes its table; bad option values are one-paragraph errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

pytestmark = pytest.mark.slow


def cli(*args: str):
    from mmapps.cli.main import build_app

    return CliRunner().invoke(build_app(), [str(a) for a in args])


def test_fp16_graph_beside_the_fp32_one(shapes_domain, shapes_smoke_run, tmp_path: Path) -> None:
    from mmapps.export import export_checkpoint, load_export
    from mmapps.export.half import TOLERANCE

    ckpt = shapes_smoke_run.run_dir / "checkpoints" / "best.safetensors"
    result = export_checkpoint(ckpt, shapes_domain, tmp_path / "export", precision="fp16", log=lambda line: None)
    side = json.loads(result.sidecar.read_text())
    half = side["half"]
    assert half["model_file"] == "model.fp16.onnx" and "model.fp16.onnx" in side["artifacts"] and half["parity"]["ok"]
    assert half["tolerance"] == {"atol": TOLERANCE["fp16"][0], "rtol": TOLERANCE["fp16"][1]}
    model = onnx.load(str(tmp_path / "export" / "model.fp16.onnx"))
    onnx.checker.check_model(model)
    big = [t for t in model.graph.initializer if int(np.prod(t.dims)) > 64 and t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)]
    assert big and all(t.data_type == onnx.TensorProto.FLOAT16 for t in big), "every large weight is float16"
    assert all(v.type.tensor_type.elem_type != onnx.TensorProto.FLOAT16 for v in (*model.graph.input, *model.graph.output)), "fp32 (or int/bool) I/O"
    assert half["parity"]["metric_torch"] == pytest.approx(side["parity"]["metric_torch"])
    assert 0 < half["parity"]["max_abs_diff"], "half precision is not bit-equal: a zero difference means the fp32 graph was measured"
    assert half["runs_on"].startswith(("onnxruntime CPUExecutionProvider", "PyTorch fp16 autocast (onnxruntime CPU cannot run the graph"))
    if half["runs_on"].startswith("onnxruntime"):
        assert load_export(tmp_path / "export" / "model.fp16.onnx").model_path.name == "model.fp16.onnx"


def test_sensitivity_search_runs_and_reports_when_the_goal_is_missed(shapes_domain, shapes_smoke_run, tmp_path: Path) -> None:
    """An unreachable goal (a negative drop) forces the search: the table ranks every op group, the steps keep
    at most half the MACs fp32, the report says the goal was missed and which groups stay fp32 and why."""
    from mmapps.export import export_checkpoint, load_export

    ckpt = shapes_smoke_run.run_dir / "checkpoints" / "best.safetensors"
    result = export_checkpoint(ckpt, shapes_domain, tmp_path / "export", quantize="static", calibration_samples=16, calibration_method="entropy", int8_max_drop=-1.0, log=lambda line: None)
    q = json.loads(result.sidecar.read_text())["quantized"]
    sens = q["sensitivity"]
    assert q["goal"] == {"max_drop_ci_high": -1.0, "met": False} and not sens["goal_met"]
    assert len(sens["table"]) >= 2 and [r["output_error"] for r in sens["table"]] == sorted((r["output_error"] for r in sens["table"]), reverse=True)
    assert sum(r["mac_share"] for r in sens["table"]) == pytest.approx(1.0)
    share = {r["group"]: r["mac_share"] for r in sens["table"]}
    assert sens["steps"] and all(sum(share[g] for g in s["groups"]) <= 0.5 + 1e-9 for s in sens["steps"])  # at most half the quantisable MACs fp32
    kept = [r["group"] for r in sens["table"] if r["kept_fp32"]]
    assert all(g in q["fp32_reasons"] for g in kept)
    assert q["calibration"]["method"] == "entropy" and q["validation"]["drop_ci_high"] is not None
    assert "node_ops" not in q and "_macs" not in q
    assert load_export(tmp_path / "export" / "model.int8.onnx").model_path.name == "model.int8.onnx"
    assert "fp32 groups kept by sensitivity" in "\n".join(result.variant_lines())


@pytest.mark.parametrize(("option", "value", "expect"), [
    ("--calibration-method", "kl", "--calibration-method 'kl': expected one of minmax, entropy, percentile"),
    ("--precision", "fp8", "--precision 'fp8': expected one of fp32, fp16"),
    ("--precision", "bf16", "--precision bf16: not available"),
    ("--int8-max-drop", "lots", "--int8-max-drop 'lots': expected auto, none or a metric drop >= 0"),
])
def test_bad_option_values_are_one_paragraph_errors(shapes_domain, shapes_smoke_run, tmp_path: Path, option: str, value: str, expect: str) -> None:
    ckpt = shapes_smoke_run.run_dir / "checkpoints" / "best.safetensors"
    result = cli("shapes", "export", "--checkpoint", ckpt, "--out", tmp_path / "export", option, value)
    assert result.exit_code != 0 and expect in result.output and "Traceback" not in result.output
    assert not (tmp_path / "export").exists()
