"""The CLI end to end through Typer's CliRunner, plus the start-up import budget."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

runner = CliRunner()


@pytest.fixture(scope="module")
def app(shapes_domain):
    from mmapps.cli.main import build_app

    return build_app()


def test_help_and_domains_import_nothing_heavy():
    code = (
        "import sys; from typer.testing import CliRunner; from mmapps.cli.main import app; "
        "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; "
        "r = CliRunner().invoke(app, ['domains']); assert r.exit_code == 0, r.output; "
        "heavy = [m for m in ('torch', 'monai', 'lightning', 'open3d', 'transformers', 'pydicom', 'av') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_domains_lists_the_example_plugin(app):
    result = runner.invoke(app, ["domains"])
    assert result.exit_code == 0
    assert "shapes" in result.output and "image(image)" in result.output and "mmapps-shapes" in result.output


def test_info(app):
    result = runner.invoke(app, ["shapes", "info"])
    assert result.exit_code == 0 and "measurements" in result.output and "smoke" in result.output
    result = runner.invoke(app, ["shapes", "info", "--recipe", "smoke"])
    assert result.exit_code == 0 and "demo_n: 80" in result.output


def test_train_evaluate_predict_end_to_end(app, tmp_path):
    run = tmp_path / "run"
    result = runner.invoke(app, ["shapes", "train", "--recipe", "smoke", "--out", str(run), "--set", "train.progress=false"])
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output and "report:" in result.output
    checkpoint = run / "checkpoints" / "best.safetensors"
    result = runner.invoke(app, ["shapes", "evaluate", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "eval"), "--drop-modality", "image"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "eval" / "metrics.json").exists()
    result = runner.invoke(app, ["shapes", "evaluate", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "eval2"), "--set", "data.on_eror=stop"])
    assert result.exit_code == 2 and "on_eror" in result.output, result.output  # evaluate --set goes through config validation
    import yaml

    root = yaml.safe_load((run / "config.yaml").read_text())["data"]["root"]
    result = runner.invoke(app, ["shapes", "predict", "--checkpoint", str(checkpoint), "--data", root, "--out", str(tmp_path / "pred")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "pred" / "predictions.jsonl").read_text().count("\n") == 16


def test_demo_data_verb(app, tmp_path):
    result = runner.invoke(app, ["shapes", "demo-data", "--out", str(tmp_path / "demo"), "--n", "12"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "demo" / "samples.csv").read_text().count("\n") == 13


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["shapes", "train", "--set", "train.epochs=0"], 2, "train.epochs"),
        (["shapes", "train", "--set", "model.fusion.name=atention"], 2, "did you mean attention"),
        (["shapes", "train", "--recipe", "nope"], 2, "unknown recipe 'nope'"),
        (["shapes", "train", "--data", "/no/such/folder"], 2, "no such folder"),
        (["shapes", "train", "--config", "/no/such.yaml"], 2, "not found"),
        (["shapes", "evaluate", "--checkpoint", "/no/such.safetensors"], 4, "not found"),
        (["shapes", "evaluate", "--checkpoint", "__corrupt__"], 4, "truncated or corrupted"),
        (["shapes", "train", "--resume", "/no/such/run"], 6, "nothing to resume, no config.yaml"),
    ],
)
def test_user_errors_are_one_paragraph_with_meaningful_exit_codes(app, tmp_path, args, code, message):
    if "__corrupt__" in args:
        corrupt = tmp_path / "bad.safetensors"
        corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
        args = [str(corrupt) if a == "__corrupt__" else a for a in args]
    result = runner.invoke(app, args + ["--out", str(tmp_path / "o")] if args[1] == "train" and "--resume" not in args else args)
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_unknown_domain(app):
    result = runner.invoke(app, ["cooking", "train"])
    assert result.exit_code != 0
