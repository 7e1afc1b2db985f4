"""`mmapps <domain> pretrain` end to end, `train --init` from it, exact resume, and the bad inputs."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from typer.testing import CliRunner

from mmapps.cli.main import build_app


def _invoke(*argv: str):
    return CliRunner().invoke(build_app(), list(argv))


@pytest.fixture(scope="module")
def shapes_pretrain(shapes_domain, tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes-pretrain") / "run"
    result = _invoke("shapes", "pretrain", "--recipe", "smoke", "--out", str(out))
    assert result.exit_code == 0, result.output
    return out, result.output


def test_shapes_smoke_pretrain_writes_a_run_directory(shapes_pretrain):
    out, output = shapes_pretrain
    assert "held-out L_image" in output and "held-out L_measurements" in output and "--init" in output
    for name in ("config.yaml", "pool.json", "report.md", "metrics.json", "checkpoints/pretrained.safetensors", "checkpoints/decoders.safetensors", "checkpoints/resume.safetensors", "figures/pretrain_losses.png", "figures/pretrain_image_0.png"):
        assert (out / name).is_file(), name
    with (out / "logs" / "pretrain_steps.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {"loss/image", "loss/measurements", "weight/image", "weight/measurements", "loss/contrastive", "loss/total"} <= set(rows[0])
    assert len({r["step"] for r in rows}) == len(rows) > 2
    for row in rows:  # the logged total is the weighted sum of the logged parts
        parts = float(row["weight/image"]) * float(row["loss/image"]) + float(row["weight/measurements"]) * float(row["loss/measurements"])
        parts += float(row["weight/contrastive"]) * float(row["loss/contrastive"]) if row["loss/contrastive"] not in ("", "nan") else 0.0
        assert float(row["loss/total"]) == pytest.approx(parts, rel=1e-4)
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"loss/image", "trivial/image", "loss/image/others_hidden", "loss/measurements/others_hidden", "recon"} <= set(metrics)
    report = (out / "report.md").read_text()
    assert "Held-out reconstruction per modality" in report and "trunk-stride patch" in report and "column" in report and "Cross-modal retrieval" in report
    pool = json.loads((out / "pool.json").read_text())
    assert pool["held-out samples"] > 0 and pool["pool samples"] + pool["held-out samples"] == pool["train split samples"]


def test_train_init_loads_every_encoder_and_fusion_parameter_by_name_and_value(shapes_domain, shapes_pretrain, tmp_path):
    from safetensors.torch import load_file

    from mmapps.models.build import build_model
    from mmapps.pretrain.init import load_init
    from mmapps.workflows.resolve import resolve_config

    out, _ = shapes_pretrain
    saved = load_file(str(out / "checkpoints" / "pretrained.safetensors"))
    model = build_model(resolve_config(shapes_domain, "smoke"), shapes_domain)
    expected = {k for k in model.state_dict() if k.startswith(("encoders.", "fusion."))}
    assert set(saved) == expected
    report = load_init(model, out, "shapes")
    assert set(report.loaded) == expected and all(k.startswith("heads.") for k in report.new)
    state = model.state_dict()
    assert all(torch.equal(state[k], saved[k]) for k in expected)
    result = _invoke("shapes", "train", "--recipe", "smoke", "--init", str(out), "--out", str(tmp_path / "ft"), "--set", "train.epochs=1")
    assert result.exit_code == 0, result.output
    assert "init from" in result.output and f"loaded {len(expected)} tensors" in result.output and "heads.shape" in result.output


@pytest.mark.slow
def test_pretrain_resume_after_kill_is_exact(shapes_domain, tmp_path):
    from mmapps.pretrain.recipes import resolve_pretrain_config
    from mmapps.pretrain.workflow import pretrain
    from mmapps.train import checkpoint as ckpt
    from mmapps.train.callbacks import StopAfterEpoch

    overrides = ["train.epochs=2", "train.tensorboard=false", "pretrain.report_samples=0"]
    whole = pretrain(resolve_pretrain_config(shapes_domain, "smoke", overrides=overrides, extra={"out_dir": str(tmp_path / "whole")}), shapes_domain)
    killed_dir = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        pretrain(resolve_pretrain_config(shapes_domain, "smoke", overrides=overrides, extra={"out_dir": str(killed_dir)}), shapes_domain, callbacks=[StopAfterEpoch(0)])
    resumed = pretrain(resolve_pretrain_config(shapes_domain, "smoke", extra={"out_dir": str(killed_dir)}), shapes_domain, resume=True)
    a, _ = ckpt.read_inference_checkpoint(whole.run_dir / "checkpoints" / "last.safetensors")
    b, _ = ckpt.read_inference_checkpoint(resumed.run_dir / "checkpoints" / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [(run / "logs" / "pretrain_steps.csv").read_text() for run in (whole.run_dir, killed_dir)]
    assert steps[0] == steps[1]
    assert whole.metrics == resumed.metrics


def test_bad_pretraining_options_are_one_paragraph_errors(shapes_domain, tmp_path):
    result = _invoke("shapes", "pretrain", "--recipe", "smoke", "--out", str(tmp_path / "a"), "--set", "pretrain.loss_weights.audio=1")
    assert result.exit_code == 2 and "pretrain.loss_weights: ['audio'] is not a modality of this shapes run; its modalities are ['image', 'measurements']" in result.output
    assert "Traceback" not in result.output
    result = _invoke("shapes", "pretrain", "--recipe", "smoke", "--out", str(tmp_path / "b"), "--set", "pretrain.mask_ratio.image=1.0")
    assert result.exit_code == 2 and "pretrain.mask_ratio.image: Input should be less than 1 (found 1.0)" in result.output


def test_init_refuses_onnx_non_checkpoints_other_domains_and_other_shapes(shapes_domain, shapes_pretrain, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    out, _ = shapes_pretrain
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), str(tmp_path / "model.onnx"))
    (tmp_path / "notes.txt").write_text("not weights")
    (tmp_path / "broken.safetensors").write_bytes(b"\x00" * 64)
    cases = [
        (tmp_path / "model.onnx", "an ONNX file is an exported inference graph, not trainable weights"),
        (tmp_path / "notes.txt", "not a checkpoint (found a .txt file"),
        (tmp_path / "broken.safetensors", "not a readable safetensors file"),
    ]
    for path, message in cases:
        result = _invoke("shapes", "train", "--recipe", "smoke", "--init", str(path), "--out", str(tmp_path / "t"))
        assert result.exit_code == 4 and message in result.output and "Traceback" not in result.output, result.output
    result = _invoke("medical", "train", "--recipe", "smoke", "--init", str(out), "--out", str(tmp_path / "m"))
    assert result.exit_code == 4 and "pretrained by the shapes domain, not medical" in result.output, result.output
    result = _invoke("shapes", "train", "--recipe", "smoke", "--init", str(out), "--out", str(tmp_path / "w"), "--set", "model.dim=16")
    assert result.exit_code == 4 and "of another shape" in result.output and "encoders.image.proj.weight (checkpoint (32, 32, 1, 1), model (16, 32, 1, 1))" in result.output, result.output
    assert "--init-partial" in result.output


@pytest.mark.slow
def test_medical_smoke_pretrain_then_train_init(tmp_path):
    pre = tmp_path / "pre"
    result = _invoke("medical", "pretrain", "--recipe", "smoke", "--out", str(pre))
    assert result.exit_code == 0, result.output
    assert "held-out L_image" in result.output and "held-out L_note" in result.output
    report = (pre / "report.md").read_text()
    assert "whole note" in report and "frozen encoder token features" in report
    result = _invoke("medical", "train", "--recipe", "smoke", "--init", str(pre), "--out", str(tmp_path / "ft"))
    assert result.exit_code == 0 and "init from" in result.output, result.output
