"""Thresholds, decisions and score distributions of the sidecar, against independent oracles (scikit-learn,
numpy, hand-worked cases); sidecar hashes and the Triton config writer on their own."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmapps.domain import TaskSpec
from mmapps.evaluation.records import PredictionRecord
from mmapps.export.scores import between_scores, choose_thresholds, decisions, score_distribution, youden_threshold

TASK = TaskSpec("y", "multilabel", ("a", "b"), {}, "mmapps.tasks.postprocess:sigmoid_scores", "unused:unused", "auroc/macro")


def _records(scores: np.ndarray, targets: np.ndarray) -> list[PredictionRecord]:
    return [PredictionRecord(f"s{i}", f"g{i}", "y", {"scores": list(map(float, s))}, list(map(float, t))) for i, (s, t) in enumerate(zip(scores, targets))]


def test_youden_threshold_matches_scikit_learn():
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.random(60) < 0.4
        s = np.round(rng.random(60) * 0.5 + y * rng.random(60) * 0.5, 3)  # ties included
        fpr, tpr, thresholds = roc_curve(y, s)
        assert youden_threshold(y.astype(float), s) == pytest.approx(thresholds[np.argmax(tpr - fpr)])
    assert youden_threshold(np.ones(4), np.arange(4.0)) is None


def test_thresholds_sit_between_validation_scores_and_keep_their_decisions():
    s = np.array([0.2, 0.3, 0.3, 0.5])
    assert between_scores(0.3, s) == pytest.approx(0.25) and between_scores(0.2, s) == pytest.approx(0.15)
    assert between_scores(0.5, s) == pytest.approx(0.4)
    rng = np.random.default_rng(1)
    scores, targets = rng.random((40, 2)), (rng.random((40, 2)) < 0.5).astype(float)
    chosen = choose_thresholds(TASK, _records(scores, targets), {})
    for j, label in enumerate(TASK.labels):
        raw = youden_threshold(targets[:, j], scores[:, j])
        assert np.array_equal(scores[:, j] >= chosen[label], scores[:, j] >= raw), "same validation decisions"
        assert np.abs(scores[:, j] - chosen[label]).min() > 0, "no validation score sits on the threshold"
    domain_rule = choose_thresholds(TASK, _records(scores, targets), {"threshold/a": float(scores[3, 0]), "threshold/b": float(scores[5, 1])})
    assert np.array_equal(scores[:, 0] >= domain_rule["a"], scores[:, 0] >= scores[3, 0])
    assert choose_thresholds(TaskSpec("c", "multiclass", ("x", "y"), {}, "", "", "accuracy"), _records(scores, targets), {}) == {}


def test_decisions_per_head():
    scores = np.array([[0.2, 0.9], [0.7, 0.1]])
    assert decisions(TASK, scores, {"a": 0.5, "b": 0.95}).tolist() == [[False, False], [True, False]]
    assert decisions(TaskSpec("c", "multiclass", ("x", "y"), {}, "", "", "accuracy"), scores, {}).tolist() == [1, 0]
    assert decisions(TaskSpec("r", "regression", ("v",), {}, "", "", "mae"), scores, {}) is None


def test_score_distribution_against_numpy():
    rng = np.random.default_rng(2)
    scores = rng.random((50, 2))
    dist = score_distribution(TASK, _records(scores, np.zeros((50, 2))))
    assert dist["n"] == 50
    for j, label in enumerate(TASK.labels):
        entry = dist["labels"][label]
        counts, edges = np.histogram(scores[:, j], bins=20, range=(0, 1))
        assert entry["histogram"]["counts"] == counts.tolist() and entry["histogram"]["edges"] == pytest.approx(edges.tolist())
        assert entry["quantiles"]["0.5"] == pytest.approx(np.median(scores[:, j])) and entry["mean"] == pytest.approx(scores[:, j].mean())


def test_sidecar_round_trip_and_hashes(tmp_path):
    import hashlib

    from mmapps.export.sidecar import ExportIntegrityError, Sidecar, read_sidecar, write_sidecar
    from mmapps.export.spec import TensorSpec

    (tmp_path / "model.onnx").write_bytes(b"graph")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "vocab.txt").write_text("a\nb\n")
    inputs = [TensorSpec("x", "float32", ("batch", 3), "x", "data"), TensorSpec("x_present", "bool", ("batch",), "x", "present")]
    outputs = [TensorSpec("y", "float32", ("batch", 2), role="output", task="y")]
    sidecar = Sidecar("d", inputs, outputs, "m:f", {"inputs": []}, {"y": ["a", "b"]}, {"y": {"a": 0.5}}, {}, {"ok": True}, "domain: d\n", "1.0", 18)
    write_sidecar(tmp_path, sidecar)
    back, folder = read_sidecar(tmp_path / "model.onnx")
    assert folder == tmp_path and back.inputs == inputs and back.outputs == outputs and back.thresholds == {"y": {"a": 0.5}}
    assert back.artifacts == {"model.onnx": hashlib.sha256(b"graph").hexdigest(), "sub/vocab.txt": hashlib.sha256(b"a\nb\n").hexdigest()}
    (tmp_path / "sub" / "vocab.txt").write_text("a\nc\n")
    with pytest.raises(ExportIntegrityError, match="modified: sub/vocab.txt"):
        read_sidecar(tmp_path)
    (tmp_path / "sub" / "vocab.txt").write_text("a\nb\n")
    values = json.loads((tmp_path / "model.json").read_text())
    values["labels"]["y"] = ["b", "a"]
    (tmp_path / "model.json").write_text(json.dumps(values))
    with pytest.raises(ExportIntegrityError, match="modified after export"):
        read_sidecar(tmp_path)


def test_triton_config_round_trips_through_model_config_pb2():
    from tritonclient.grpc import model_config_pb2 as mc

    from mmapps.export.spec import TensorSpec
    from mmapps.export.triton import triton_config

    inputs = [TensorSpec("img", "float32", ("batch", "img_elements", 1, 8, 8), "img", "data"), TensorSpec("img_present", "bool", ("batch",), "img", "present")]
    outputs = [TensorSpec("y", "float32", ("batch", 2), role="output")]
    config = triton_config("m", inputs, outputs)
    assert config.max_batch_size == 32 and config.HasField("dynamic_batching")
    assert list(config.input[0].dims) == [-1, 1, 8, 8] and config.input[1].data_type == mc.TYPE_BOOL
    assert list(config.input[1].dims) == [1] and list(config.input[1].reshape.shape) == []
    unbatched = triton_config("d", [TensorSpec("pillars", "float32", ("pillars", 9))], outputs)
    assert unbatched.max_batch_size == 0 and not unbatched.HasField("dynamic_batching") and list(unbatched.output[0].dims) == [-1, 2]
    with pytest.raises(ValueError, match="max_batch_size=0"):
        triton_config("d", [TensorSpec("pillars", "float32", ("pillars", 9))], outputs, max_batch_size=8)
    gpu = triton_config("g", inputs, outputs, instance_kind="KIND_GPU", configure=lambda c: c.sequence_batching.SetInParent())
    assert gpu.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU and gpu.HasField("sequence_batching")
