"""Per-layer int8 sensitivity: op groups follow the PyTorch blocks, the layer whose int8 weights lose the
most is ranked first, the search keeps it fp32 until the goal is met, and the paired drop's CI is right."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(width, width), nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(torch.relu(self.fc1(x)))


class TwoBlocks(nn.Module):
    """blocks.0 has one huge weight (per-tensor int8 crushes every other weight of fc1 to zero, and its huge
    activation every other input of fc2); blocks.1 and the head are plain."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.ModuleList([Block(16), Block(16)])
        self.head = nn.Linear(16, 3)
        with torch.no_grad():
            self.blocks[0].fc1.weight[0, 0] = 400.0
            self.blocks[0].fc2.weight[:, 0] = 0.0  # the outlier channel stays inside blocks.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def _export(tmp_path: Path) -> Path:
    path = tmp_path / "blocks.onnx"
    program = torch.onnx.export(TwoBlocks().eval(), (torch.randn(4, 16),), dynamo=True, input_names=["x"], output_names=["y"],
                                dynamic_shapes={"x": {0: torch.export.Dim("n", min=1, max=256)}}, opset_version=18)
    program.save(str(path))
    return path


def _probe(source: Path) -> object:
    from mmapps.export.quant_eval import SplitProbe

    rng = np.random.default_rng(1)
    session = ort.InferenceSession(str(source))
    probe = SplitProbe(None, None, "val")
    for _ in range(2):
        feeds = {"x": rng.standard_normal((32, 16)).astype(np.float32)}
        probe.batches.append((list(range(32)), feeds, {"y": session.run(["y"], feeds)[0]}))
    return probe


def test_groups_follow_the_numbered_blocks(tmp_path: Path) -> None:
    import onnx

    from mmapps.export.quantize import quantize_graph
    from mmapps.export.sensitivity import node_groups

    source = _export(tmp_path)
    feeds = {"x": np.zeros((4, 16), np.float32)}
    plan = quantize_graph(source, tmp_path / "all.onnx", "dynamic", feeds, [])
    groups = node_groups(onnx.load(str(source)), plan["int8_nodes"])
    assert sorted(groups) == ["blocks.0", "blocks.1", "head"]
    assert len(groups["blocks.0"]) == len(groups["blocks.1"]) == 2 and len(groups["head"]) == 1


def test_the_crushed_layer_ranks_first_and_the_search_keeps_it_fp32(tmp_path: Path) -> None:
    import onnx

    from mmapps.export.quantize import quantize_graph
    from mmapps.export.sensitivity import layer_sensitivity, node_groups, search_exclusions

    source = _export(tmp_path)
    probe = _probe(source)
    example = probe.batches[0][1]
    first = quantize_graph(source, tmp_path / "all.onnx", "dynamic", example, [])
    macs = first.pop("_macs")
    quantize = lambda to, exclude: quantize_graph(source, to, "dynamic", example, [], "minmax", exclude, None, macs)
    groups = node_groups(onnx.load(str(source)), first["int8_nodes"])
    rows = layer_sensitivity(quantize, groups, probe, macs, lambda line: None)
    assert rows[0]["group"] == "blocks.0" and rows[0]["output_error"] > 1.5 * rows[1]["output_error"]
    assert sum(r["mac_share"] for r in rows) == pytest.approx(1.0)
    all_int8 = probe.output_error(ort.InferenceSession(str(tmp_path / "all.onnx")))
    goal = 0.6 * all_int8  # met once blocks.0 is fp32 (seeded: all int8 0.26, blocks.0 fp32 0.12)
    target = tmp_path / "chosen.onnx"
    evaluate = lambda: {"drop": None, "drop_ci_high": probe.output_error(ort.InferenceSession(str(target)))}
    found = search_exclusions(quantize, target, rows, evaluate, goal, lambda line: None)
    assert found["goal_met"] and found["excluded_groups"] == ["blocks.0"] and len(found["steps"]) == 1
    assert "blocks.0" not in {g for g, names in groups.items() if set(names) & set(found["plan"]["int8_nodes"])}
    assert found["plan"]["int8_mac_share"] == pytest.approx(1 - rows[0]["mac_share"])


def test_an_unreachable_goal_is_reported_missed_within_the_mac_cap(tmp_path: Path) -> None:
    import onnx

    from mmapps.export.quantize import quantize_graph
    from mmapps.export.sensitivity import MAX_FP32_SHARE, layer_sensitivity, node_groups, search_exclusions

    source = _export(tmp_path)
    probe = _probe(source)
    example = probe.batches[0][1]
    first = quantize_graph(source, tmp_path / "all.onnx", "dynamic", example, [])
    macs = first.pop("_macs")
    quantize = lambda to, exclude: quantize_graph(source, to, "dynamic", example, [], "minmax", exclude, None, macs)
    rows = layer_sensitivity(quantize, node_groups(onnx.load(str(source)), first["int8_nodes"]), probe, macs, lambda line: None)
    target = tmp_path / "chosen.onnx"
    found = search_exclusions(quantize, target, rows, lambda: {"drop_ci_high": 1.0}, 0.0, lambda line: None)
    assert not found["goal_met"] and found["steps"]
    assert all(1 - s["int8_mac_share"] <= MAX_FP32_SHARE + 1e-9 for s in found["steps"])


def test_paired_drop_ci_against_a_hand_resampled_oracle() -> None:
    """The paired bootstrap resamples groups for both models together: an identical variant has drop 0 with a
    zero-width CI, and a variant with flipped scores on one group has a CI that excludes 0."""
    from types import SimpleNamespace

    from sklearn.metrics import roc_auc_score

    from mmapps.evaluation.records import PredictionRecord
    from mmapps.export.drop import drop_goal, paired_drop

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    s = np.clip(y * 0.6 + rng.normal(0, 0.3, 60), 0, 1)
    worse = s.copy()
    worse[:20] = 1 - worse[:20]
    rec = lambda scores: {"t": [PredictionRecord(f"s{i}", f"g{i}", "t", {"score": float(v)}, int(y[i]), {}) for i, v in enumerate(scores)]}

    def metrics(records: dict, cfg: object, **_: object) -> dict:
        rows = records
        return {"auc": roc_auc_score([r.target for r in rows], [r.prediction["score"] for r in rows])}

    task = SimpleNamespace(name="t", metrics=metrics, primary_metric="auc")  # a Domain's lazy reference may be the function itself
    domain = SimpleNamespace(tasks=[task], primary_task=task)
    cfg = SimpleNamespace(eval=SimpleNamespace(model_copy=lambda update: None), model_copy=lambda update: None)
    same = paired_drop(domain, cfg, rec(s), rec(s), 100)
    assert same["drop"] == 0 and same["drop_ci_low"] == same["drop_ci_high"] == 0
    lost = paired_drop(domain, cfg, rec(s), rec(worse), 100)
    assert lost["drop"] == pytest.approx(roc_auc_score(y, s) - roc_auc_score(y, worse)) and lost["drop_ci_low"] > 0
    assert drop_goal("auroc/macro") == 0.01 and drop_goal("bev_ap_r40/Car/moderate") == 0.02 and drop_goal("frame/auc") == 0.01
