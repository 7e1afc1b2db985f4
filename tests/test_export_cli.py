"""``mmapps medical export`` end to end on a smoke run (tiny BERT-shaped note encoder): the export folder,
its sidecar and hashes, evaluate/predict on onnxruntime equal PyTorch, Triton config, and bad input."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

pytestmark = pytest.mark.slow


def cli(*args: str):
    from mmapps.cli.main import build_app

    return CliRunner().invoke(build_app(), [str(a) for a in args])


@pytest.fixture(scope="module")
def medical_run(tmp_path_factory) -> Path:
    from mmapps.export.testing import write_tiny_text_model
    from mmapps.plugins import get_domain
    from mmapps.workflows.resolve import resolve_config
    from mmapps.workflows.run import train

    root = tmp_path_factory.mktemp("medical-export")
    text = write_tiny_text_model(root / "tiny-bert")
    out = root / "run"
    cfg = resolve_config(get_domain("medical"), "smoke", overrides=[f"out_dir={out}", "train.progress=false", f"model.encoders.note.options.model={text}", "data.demo_n=32"])
    train(cfg, get_domain("medical"))
    return out


@pytest.fixture(scope="module")
def medical_export(medical_run) -> tuple[Path, str]:
    out = medical_run.parent / "export"
    result = cli("medical", "export", "--checkpoint", medical_run / "checkpoints" / "best.safetensors", "--out", out)
    assert result.exit_code == 0, result.output
    return out, result.output


def test_export_folder_sidecar_and_parity(medical_run, medical_export):
    from mmapps_domains.medical import FINDINGS

    out, output = medical_export
    assert "max |d|" in output and "0 of" in output and "decisions flipped" in output and "auroc/macro: PyTorch" in output
    for name in ("model.onnx", "model.json", "MODEL_CARD.md", "tokenizers/note/tokenizer.json", "triton/medical/config.pbtxt", "triton/medical/1/model.onnx"):
        assert (out / name).is_file(), name
    side = json.loads((out / "model.json").read_text())
    inputs = {i["name"]: i for i in side["inputs"]}
    assert inputs["image"]["shape"][:2] == ["batch", "image_elements"] and inputs["image"]["dtype"] == "float32"
    assert inputs["image_present"] == {**inputs["image_present"], "dtype": "bool", "shape": ["batch"]}
    assert inputs["note_input_ids"]["shape"] == ["batch", "note_tokens"] and inputs["note_input_ids"]["dtype"] == "int64"
    assert side["outputs"][0]["name"] == "findings" and side["outputs"][0]["shape"] == ["batch", len(FINDINGS)]
    assert side["labels"] == {"findings": list(FINDINGS)}
    assert set(side["thresholds"]["findings"]) == set(FINDINGS)
    assert side["parity"]["ok"] and side["parity"]["flipped"] == 0 and side["parity"]["max_abs_diff"] <= 1e-4
    val_n = side["score_distribution"]["findings"]["n"]
    for label in FINDINGS:
        dist = side["score_distribution"]["findings"]["labels"][label]
        assert sum(dist["histogram"]["counts"]) == val_n and dist["quantiles"]["0.0"] <= dist["quantiles"]["0.5"] <= dist["quantiles"]["1.0"]
    from safetensors import safe_open

    with safe_open(str(medical_run / "checkpoints" / "best.safetensors"), framework="pt") as handle:
        config = handle.metadata()["config"]
    assert side["config"] == config and side["config_sha256"] == hashlib.sha256(config.encode()).hexdigest()
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name != "model.json")
    assert sorted(side["artifacts"]) == files
    assert all(side["artifacts"][f] == hashlib.sha256((out / f).read_bytes()).hexdigest() for f in files)
    assert side["mmapps_version"] and side["opset"] == 18
    card = (out / "MODEL_CARD.md").read_text()
    assert "## Intended use" in card and "## Limits" in card and "95% CI" in card
    splits = json.loads((medical_run / "splits.json").read_text())
    text = (out / "model.json").read_text() + card
    assert not [g for g in splits if g in text], "group (patient) ids must not reach the export"
    studies = [line.split(",")[0] for line in (medical_run / "predictions.csv").read_text().splitlines()[1:]]
    assert studies and not [s for s in studies if re.search(rf"(?<![0-9.]){re.escape(s)}(?![0-9])", text)], "study ids must not reach the export"
    assert not list(out.parent.glob(".export.*.tmp")), "no temporary folder left"


def _metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


def test_evaluate_and_predict_on_onnxruntime_match_pytorch(medical_run, medical_export, tmp_path):
    out, _ = medical_export
    ckpt = medical_run / "checkpoints" / "best.safetensors"
    for name, source in (("torch", ckpt), ("onnx", out / "model.onnx")):
        result = cli("medical", "evaluate", "--checkpoint", source, "--out", tmp_path / name)
        assert result.exit_code == 0, result.output
    torch_metrics, onnx_metrics = _metrics(tmp_path / "torch"), _metrics(tmp_path / "onnx")
    # the Grad-CAM pointing game needs the nn.Module's gradients: a report section the export skips
    assert set(onnx_metrics) <= set(torch_metrics) and all(k.startswith("pointing_game/") for k in set(torch_metrics) - set(onnx_metrics))
    assert len(onnx_metrics) > 20
    for key, value in onnx_metrics.items():
        if isinstance(value, float):
            assert value == pytest.approx(torch_metrics[key], abs=1e-4), key
    root = yaml.safe_load((medical_run / "config.yaml").read_text())["data"]["root"]
    for name, source in (("torch", ckpt), ("onnx", out)):
        result = cli("medical", "predict", "--checkpoint", source, "--data", root, "--out", tmp_path / f"pred-{name}")
        assert result.exit_code == 0, result.output
    import csv

    rows = {name: list(csv.DictReader((tmp_path / f"pred-{name}" / "predictions.csv").open())) for name in ("torch", "onnx")}
    assert len(rows["torch"]) == len(rows["onnx"]) > 0
    for a, b in zip(rows["torch"], rows["onnx"]):
        assert a.keys() == b.keys()
        for key in a:
            try:
                assert float(b[key]) == pytest.approx(float(a[key]), abs=1e-4), key
            except ValueError:
                assert a[key] == b[key]


@pytest.mark.parametrize("tamper", ["weights", "tokenizer", "added", "removed", "sidecar"])
def test_a_modified_export_is_refused(medical_export, tmp_path, tamper):
    out, _ = medical_export
    copy = tmp_path / "export"
    shutil.copytree(out, copy)
    if tamper == "weights":
        with (copy / "model.onnx").open("r+b") as handle:
            handle.seek(-100, 2)
            byte = handle.read(1)
            handle.seek(-100, 2)
            handle.write(bytes([byte[0] ^ 1]))
        named = "modified: model.onnx"
    elif tamper == "tokenizer":
        (copy / "tokenizers/note/tokenizer.json").write_text((copy / "tokenizers/note/tokenizer.json").read_text().replace('"[CLS]"', '"[CLX]"', 1))
        named = "modified: tokenizers/note/tokenizer.json"
    elif tamper == "added":
        (copy / "tokenizers/note/extra.txt").write_text("x")
        named = "not part of the export: tokenizers/note/extra.txt"
    elif tamper == "removed":
        (copy / "MODEL_CARD.md").unlink()
        named = "missing: MODEL_CARD.md"
    else:
        side = json.loads((copy / "model.json").read_text())
        side["thresholds"]["findings"]["Edema"] = 0.01
        (copy / "model.json").write_text(json.dumps(side))
        named = "model.json was modified after export"
    result = cli("medical", "evaluate", "--checkpoint", copy / "model.onnx", "--out", tmp_path / "eval")
    assert result.exit_code == 4, result.output
    assert named in result.output and "refused" in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "eval").exists()


def test_triton_config_parses_and_matches_the_graph(medical_export):
    import onnx
    from tritonclient.grpc import model_config_pb2 as mc

    from mmapps.export.triton import read_triton_config

    out, _ = medical_export
    model_dir = out / "triton" / "medical"
    config = read_triton_config(model_dir / "config.pbtxt")
    assert config.name == model_dir.name and config.backend == "onnxruntime" and config.max_batch_size > 0
    assert config.HasField("dynamic_batching") and [g.kind for g in config.instance_group] == [mc.ModelInstanceGroup.KIND_CPU]
    graph = onnx.load(str(model_dir / "1" / "model.onnx"), load_external_data=False).graph
    to_triton = {onnx.TensorProto.FLOAT: mc.TYPE_FP32, onnx.TensorProto.INT64: mc.TYPE_INT64, onnx.TensorProto.BOOL: mc.TYPE_BOOL}
    for declared, actual in ((config.input, graph.input), (config.output, graph.output)):
        assert [t.name for t in declared] == [v.name for v in actual]
        for t, v in zip(declared, actual):
            assert t.data_type == to_triton[v.type.tensor_type.elem_type], t.name
            dims = [d.dim_value if d.dim_value else -1 for d in v.type.tensor_type.shape.dim][1:]  # without the batch axis
            assert list(t.dims) == (dims or [1]), t.name
    assert all(t.data_type == mc.TYPE_BOOL for t in config.input if t.name.endswith("_present"))
    assert (model_dir / "1" / "model.onnx").read_bytes() == (out / "model.onnx").read_bytes()


def _assert_refused(result, code: int, words: str, out: Path) -> None:
    assert result.exit_code == code, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]  # (progress bars of model loading may precede it)
    assert len(errors) == 1 and words in errors[0] and "Traceback" not in result.output, result.output
    assert not out.exists() and not list(out.parent.glob(f".{out.name}.*")), "nothing half-written"


def test_bad_input_is_one_paragraph_and_writes_nothing(medical_run, medical_export, tmp_path):
    ckpt = medical_run / "checkpoints" / "best.safetensors"
    out = tmp_path / "export"
    _assert_refused(cli("driving", "export", "--checkpoint", ckpt, "--out", out), 4, "trained by the medical domain, not driving", out)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    _assert_refused(cli("medical", "export", "--checkpoint", truncated, "--out", out), 4, "truncated or corrupted", out)
    _assert_refused(cli("medical", "export", "--checkpoint", ckpt, "--out", out, "--opset", "17"), 2, "--opset 17: not supported", out)
    _assert_refused(cli("medical", "export", "--checkpoint", ckpt, "--out", out, "--opset", "99"), 2, "--opset 99: not supported", out)
    _assert_refused(cli("medical", "export", "--checkpoint", ckpt, "--out", out, "--quantize", "static", "--calibration-samples", "0"), 2, "no calibration data", out)
    _assert_refused(cli("medical", "export", "--checkpoint", medical_export[0] / "model.onnx", "--out", out), 4, "not an exported model", out)
    _assert_refused(cli("medical", "export", "--checkpoint", ckpt, "--out", out, "--quantize", "int4"), 2, "--quantize 'int4'", out)
