"""Complexity figures: MACs against hand counts, parameters per part, the section in every run report."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from mmapps.report.complexity import count_macs, count_parameters, model_parts


def test_macs_equal_a_hand_count_of_a_conv_and_a_linear_layer() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4))
    macs = count_macs(model, torch.randn(2, 3, 8, 8))
    conv = 8 * 3 * 3 * 3 * 6 * 6  # out channels x in channels x kernel x output positions
    linear = 288 * 4
    assert macs.per_part["0"] == conv and macs.per_part["3"] == linear and macs.per_part["1"] == 0
    assert macs.per_sample == conv + linear and macs.total == 2 * (conv + linear) and macs.batch_size == 2


@pytest.mark.parametrize("kind", ["native", "sdpa"])
def test_attention_macs_include_the_attention_products(kind: str) -> None:
    """Q·Kᵀ and probabilities·V are counted on the CPU kernels flop_counter does not know by itself."""
    from mmapps.models.fusions.sdpa_layer import SdpaEncoderLayer

    T, D = 5, 8
    if kind == "native":
        attention = nn.MultiheadAttention(D, 2, batch_first=True)
        model = nn.ModuleDict({"attn": attention})
        forward = lambda m, x: m["attn"](x, x, x, need_weights=False)[0]
        expected = 4 * T * D * D + 2 * T * T * D  # q, k, v, out projections + the two products
    else:
        model = SdpaEncoderLayer(D, 2, 16, dropout=0.0)
        forward = None
        expected = 4 * T * D * D + 2 * T * T * D + 2 * T * D * 16
    assert count_macs(model, torch.randn(1, T, D), forward).per_sample == expected


def test_parameters_per_part_of_a_fusion_model() -> None:
    from mmapps.models.build import register_core_parts
    from mmapps.models.fusion_model import FusionModel
    from mmapps.registry import ENCODERS, FUSIONS, HEADS

    register_core_parts()
    encoders = nn.ModuleDict({"a": ENCODERS.get("tabular_mlp")(dim=8, in_features=3), "b": ENCODERS.get("tabular_mlp")(dim=8, in_features=5)})
    encoders["b"].requires_grad_(False)
    fusion = FUSIONS.get("concat")(modality_to_dim={"a": 8, "b": 8}, dim=8)
    heads = nn.ModuleDict({"y": HEADS.get("multiclass")(in_dim=8, num_labels=3)})
    model = FusionModel(encoders, fusion, heads)
    rows = {r.part: r for r in count_parameters(model)}
    assert list(model_parts(model)) == ["encoders.a", "encoders.b", "fusion", "heads"]
    for part, module in (("encoders.a", encoders["a"]), ("encoders.b", encoders["b"]), ("fusion", fusion), ("heads", heads)):
        assert rows[part].total == sum(p.numel() for p in module.parameters())
    assert rows["encoders.b"].trainable == 0 and rows["encoders.a"].trainable == rows["encoders.a"].total
    assert rows["total"].total == sum(p.numel() for p in model.parameters())
    assert rows["total"].trainable == rows["total"].total - rows["encoders.b"].total


def test_every_run_report_has_a_complexity_section(shapes_smoke_run, shapes_domain) -> None:
    from mmapps.models.build import build_model
    from mmapps.workflows.run import _config_from_checkpoint

    run = shapes_smoke_run.run_dir
    sections = {s["title"]: s for s in json.loads((run / "report.json").read_text())["sections"]}
    data = sections["Complexity"]["data"]
    cfg, _ = _config_from_checkpoint(run / "checkpoints" / "best.safetensors", None, "shapes")
    model = build_model(cfg, shapes_domain)
    assert data["parameters"]["total"]["total"] == sum(p.numel() for p in model.parameters())
    assert set(data["parameters"]) == {"encoders.image", "encoders.measurements", "fusion", "heads", "total"}
    assert data["macs_per_sample"] > 0 and data["macs_per_part"]["encoders.image"] > 0
    assert sum(data["macs_per_part"].values()) <= data["macs_per_sample"] * (1 + 1e-9)
    assert data["train_samples_per_s"] > 0 and data["inference_samples_per_s"] > 0 and data["train_peak_mb"] > 0
    assert "## Complexity" in (run / "report.md").read_text()
