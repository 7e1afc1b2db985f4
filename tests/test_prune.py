"""Pruning: structured channels really shrink parameters and MACs, the pruned checkpoint reloads,
evaluates and keeps its widths; magnitude pruning zeroes weights and compresses; text layer dropping."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from mmapps.errors import CheckpointError, ConfigError


@pytest.fixture(scope="module")
def pruned_run(shapes_smoke_run, shapes_domain, tmp_path_factory):
    from mmapps.prune.workflow import prune

    out = tmp_path_factory.mktemp("pruned") / "p50"
    return prune(shapes_smoke_run.run_dir / "checkpoints" / "best.safetensors", shapes_domain, out, amount=0.5)


def test_structured_pruning_removes_the_share_of_channels_and_reduces_parameters_and_macs(pruned_run) -> None:
    s = pruned_run.summary
    assert s.parameters_after < s.parameters_before and s.macs_after < s.macs_before
    assert s.layers, "no layer was pruned"
    for name, (before, after) in s.layers.items():
        assert after == before - int(before * 0.5), (name, before, after)
    assert not any(name.endswith("proj") or name.startswith("heads") for name in s.layers)  # interfaces keep their width
    saved = json.loads((pruned_run.out_dir / "prune.json").read_text())
    assert saved["parameters_after"] == s.parameters_after
    assert not list(pruned_run.out_dir.parent.glob(".*.tmp"))  # written through a temporary folder


def test_pruned_checkpoint_reloads_with_its_widths_and_evaluates_to_the_same_metrics(pruned_run, shapes_domain, tmp_path) -> None:
    from mmapps.models.build import build_model
    from mmapps.train import checkpoint as ckpt
    from mmapps.workflows.run import _config_from_checkpoint, evaluate

    cfg, state = _config_from_checkpoint(pruned_run.checkpoint, None, "shapes")
    assert cfg.model.pruned is not None and cfg.model.pruned.shapes
    model = build_model(cfg, shapes_domain)
    ckpt.load_weights(model, state, pruned_run.checkpoint)  # strict: every shape matches
    assert sum(p.numel() for p in model.parameters()) == pruned_run.summary.parameters_after
    result = evaluate(pruned_run.checkpoint, shapes_domain, tmp_path / "eval")
    assert result.metrics["accuracy"] == pruned_run.metrics["accuracy"]
    sections = {s["title"]: s["data"] for s in json.loads((pruned_run.out_dir / "report.json").read_text())["sections"]}
    assert sections["Complexity"]["parameters"]["total"]["total"] == pruned_run.summary.parameters_after


def test_magnitude_pruning_zeroes_weights_keeps_shapes_and_says_it_is_not_faster(shapes_smoke_run, shapes_domain, tmp_path) -> None:
    from mmapps.prune.magnitude import compressed_size
    from mmapps.prune.workflow import prune

    source = shapes_smoke_run.run_dir / "checkpoints" / "best.safetensors"
    result = prune(source, shapes_domain, tmp_path / "mag", amount=0.6, method="magnitude")
    s = result.summary
    assert s.parameters_after == s.parameters_before and s.macs_after == s.macs_before
    assert all(share >= 0.59 for share in s.layers.values())
    assert s.checkpoint_compressed_bytes < compressed_size(source)
    report = result.report.read_text()
    assert "not faster" in report and "compresses" in report


def test_tiny_text_transformer_loses_its_top_layers_and_the_structure_reapplies() -> None:
    from transformers import BertConfig, BertModel

    from mmapps.config import PrunedConfig
    from mmapps.prune.layers import drop_text_layers
    from mmapps.prune.structure import apply_structure

    def build() -> nn.Module:
        torch.manual_seed(0)
        holder = nn.Module()
        holder.backbone = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32)).eval()
        return holder

    model = build()
    kept = drop_text_layers(model, 1)
    assert kept == {"backbone.encoder.layer": [0, 1]} and len(model.backbone.encoder.layer) == 2
    assert model.backbone.config.num_hidden_layers == 2
    ids = torch.tensor([[1, 5, 7, 2]])
    out = model.backbone(input_ids=ids).last_hidden_state
    rebuilt = apply_structure(build(), PrunedConfig(method="channels", amount=0.0, kept_layers=kept))
    rebuilt.load_state_dict(model.state_dict())
    assert torch.equal(rebuilt.backbone(input_ids=ids).last_hidden_state, out)
    with pytest.raises(ConfigError, match="at least one must stay"):
        drop_text_layers(build(), 3)


def test_bad_prune_requests_are_clear_errors(shapes_smoke_run, shapes_domain, tmp_path) -> None:
    from mmapps.prune.workflow import prune

    source = shapes_smoke_run.run_dir / "checkpoints" / "best.safetensors"
    with pytest.raises(ConfigError, match="in \\[0, 1\\)"):
        prune(source, shapes_domain, tmp_path / "a", amount=1.0)
    with pytest.raises(ConfigError, match="--method"):
        prune(source, shapes_domain, tmp_path / "b", method="heads")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    with pytest.raises(ConfigError, match="not empty"):
        prune(source, shapes_domain, tmp_path / "full")
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(source.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        prune(truncated, shapes_domain, tmp_path / "c")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.safetensors", "full"]  # nothing half-written


def test_prune_from_the_cli(shapes_smoke_run, shapes_domain, tmp_path) -> None:
    from mmapps.cli.main import build_app

    app = build_app()
    source = shapes_smoke_run.run_dir / "checkpoints" / "best.safetensors"
    runner = CliRunner()
    bad = runner.invoke(app, ["shapes", "prune", "--checkpoint", str(source), "--amount", "1.5", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "--amount 1.5" in bad.output and "Traceback" not in bad.output
    ok = runner.invoke(app, ["shapes", "prune", "--checkpoint", str(source), "--amount", "0.3", "--out", str(tmp_path / "p30")])
    assert ok.exit_code == 0, ok.output
    assert "pruned checkpoint:" in ok.output and (tmp_path / "p30" / "checkpoints" / "best.safetensors").is_file()


@pytest.mark.slow
def test_pruned_checkpoint_exports_with_parity(pruned_run, shapes_domain, tmp_path) -> None:
    from mmapps.export import export_checkpoint

    result = export_checkpoint(pruned_run.checkpoint, shapes_domain, tmp_path / "export", log=lambda line: None)
    assert result.parity.ok and result.parity.flipped == 0
    assert result.parity.metric_torch == pytest.approx(result.parity.metric_onnx)
