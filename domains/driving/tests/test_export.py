"""The driving detector exported to ONNX equals PyTorch: ragged pillars, calibration as input, camera presence as masking;
every registered fusion (lidar_only, painting, bev) exported once with parity."""

from pathlib import Path

import numpy as np
import pytest
import torch

from mmapps.config import validate_config
from mmapps.data import Sample, collate_samples
from mmapps.plugins import get_domain
from mmapps_domains.driving.export import DrivingRuntime, make_adapter, pillarise_numpy
from mmapps_domains.driving.model import build_model
from mmapps_domains.driving.postprocess import postprocess
from mmapps_domains.driving.preprocess import pillarise

DATA = {"image_size": [32, 96], "point_range": [0, -6.4, -3, 12.8, 6.4, 1]}
MODEL = {"pillar_size": 0.4, "pfn_channels": 8, "backbone_channels": [8, 8], "head_channels": 8, "image_channels": 4}
LAYOUT = {"lidar": "packed", "camera": "fixed"}
TR = [[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0]]


def lidar_to_image(focal: float, cx: float) -> list[list[float]]:
    """A KITTI-like LiDAR -> model-image projection (focal length and principal point in model pixels)."""
    k = np.array([[focal, 0, cx, 0], [0, focal, 16.0, 0], [0, 0, 1, 0]])
    return (k @ np.vstack([np.array(TR, float), [0, 0, 0, 1]])).tolist()


def make_sample(i: int, n_points: int, camera: bool = True, calib: tuple[float, float] = (30.0, 48.0)) -> Sample:
    g = torch.Generator().manual_seed(i)
    points = torch.cat([torch.rand(n_points, 1, generator=g) * 12.8, torch.rand(n_points, 1, generator=g) * 12.8 - 6.4,
                        torch.rand(n_points, 1, generator=g) * 3.5 - 2.8, torch.rand(n_points, 1, generator=g)], 1)
    meta = {"frame_id": f"{i:06d}", "image_size": [375, 1242], "lidar_to_image": lidar_to_image(*calib),
            "calib": {"P2": [[400, 0, 600, 0], [0, 400, 180, 0], [0, 0, 1, 0]], "R0_rect": np.eye(3).tolist(), "Tr_velo_to_cam": TR}}
    image = torch.randn(3, 32, 96, generator=g) if camera else None
    return Sample(f"{i:06d}", f"{i:06d}", {"lidar": points, "camera": image}, {}, meta)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """The painting detector (camera used per point) exported once, traced on 2 frames of 400 and 500 points."""
    import onnxruntime as ort

    from mmapps.export.onnx_write import write_onnx

    torch.manual_seed(0)
    cfg = validate_config({"domain": "driving", "data": {"options": DATA}, "model": {"fusion": {"name": "painting"}, "options": MODEL}})
    model = build_model(cfg).eval()
    for module in model.modules():  # trained-looking batch-norm statistics, so every input matters
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    adapter = make_adapter(model)
    runtime = DrivingRuntime(adapter.preprocess(None))
    path = tmp_path_factory.mktemp("driving-export") / "model.onnx"
    write_onnx(adapter, runtime.feeds(collate_samples([make_sample(0, 400), make_sample(1, 500)], LAYOUT)), path, 18)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return model, adapter, runtime, session, path


def run_both(exported: tuple, samples: list[Sample], feeds_edit=None) -> tuple[dict, dict]:
    model, adapter, runtime, session, _ = exported
    batch = collate_samples(samples, LAYOUT)
    feeds = runtime.feeds(batch)
    if feeds_edit is not None:
        feeds_edit(feeds)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds))), adapter.reference(model, batch)


def assert_parity(got: dict, ref: dict) -> None:
    for name, value in ref.items():
        np.testing.assert_allclose(got[name], value, atol=1e-4, rtol=1e-3, err_msg=name)


def test_graph_inputs_outputs_and_boundary(exported: tuple) -> None:
    _, adapter, _, session, path = exported
    assert [i.name for i in session.get_inputs()] == [s.name for s in adapter.inputs]
    shapes = {i.name: i.shape for i in session.get_inputs()}
    assert shapes["lidar_point_features"][0] == shapes["lidar_pillar_of_point"][0] == "lidar_points"  # ragged, shared
    assert shapes["lidar_pillar_coords"][0] == "lidar_pillars" and shapes["camera"][0] == shapes["lidar_to_image"][0] == "batch"
    types = {i.name: i.type for i in session.get_inputs()}
    assert types["camera_present"] == "tensor(bool)" and types["lidar_pillar_coords"] == "tensor(int64)"
    import onnx

    graph = onnx.load(str(path)).graph
    ops = {n.op_type for n in graph.node}
    assert {"ScatterElements", "Conv"} <= ops and ({"ScatterND"} & ops or {"ScatterElements"} & ops)  # the scatter is in the graph
    reductions = [a.s for n in graph.node if n.op_type == "ScatterElements" for a in n.attribute if a.name == "reduction"]
    assert b"max" in reductions  # per-pillar max pooling
    assert not [init.name for init in graph.initializer if list(init.dims) == [3, 4]]  # no calibration frozen as a constant


def test_parity_on_shapes_not_traced_and_mixed_camera(exported: tuple) -> None:
    got, ref = run_both(exported, [make_sample(5, 900), make_sample(6, 150, camera=False), make_sample(7, 620)])
    assert got["objects_heatmap"].shape == (3, 3, 16, 16)
    assert_parity(got, ref)


def test_two_calibrations_are_inputs(exported: tuple) -> None:
    a_got, a_ref = run_both(exported, [make_sample(3, 700, calib=(30.0, 48.0)), make_sample(4, 700, calib=(30.0, 48.0))])
    b_got, b_ref = run_both(exported, [make_sample(3, 700, calib=(22.0, 40.0)), make_sample(4, 700, calib=(36.0, 56.0))])
    assert_parity(a_got, a_ref)
    assert_parity(b_got, b_ref)
    parity_error = max(np.abs(a_got[k] - a_ref[k]).max() for k in a_ref)
    effect = np.abs(a_got["objects_heatmap"] - b_got["objects_heatmap"]).max()
    assert effect > 1e-4 and effect > 50 * parity_error  # the calibration reaches the outputs: not a frozen constant


def test_absent_camera_slot_ignored_and_presence_matters(exported: tuple) -> None:
    samples = [make_sample(8, 600), make_sample(9, 600, camera=False)]
    base, ref = run_both(exported, samples)
    assert_parity(base, ref)
    rng = np.random.default_rng(0)

    def noisy(feeds: dict) -> None:
        feeds["camera"][1] = rng.uniform(-1e4, 1e4, feeds["camera"][1].shape).astype(np.float32)

    noisy_out, _ = run_both(exported, samples, noisy)
    for name in base:
        np.testing.assert_array_equal(noisy_out[name], base[name])  # bit-equal: the absent slot is zeroed in the graph

    def switched_on(feeds: dict) -> None:
        noisy(feeds)
        feeds["camera_present"][1] = True

    on, _ = run_both(exported, samples, switched_on)
    assert np.abs(on["objects_heatmap"][1] - base["objects_heatmap"][1]).max() > 1e-3
    np.testing.assert_allclose(on["objects_heatmap"][0], base["objects_heatmap"][0], atol=1e-5)  # per frame


def test_whole_batch_without_camera_equals_eager(exported: tuple) -> None:
    """Eager skips the image net when no frame has an image; the graph masks it: same outputs."""
    got, ref = run_both(exported, [make_sample(10, 500, camera=False), make_sample(11, 300, camera=False)])
    assert_parity(got, ref)


def test_postprocess_on_onnx_outputs_gives_the_same_detections(exported: tuple) -> None:
    model, _, runtime, _, _ = exported
    samples = [make_sample(12, 800), make_sample(13, 800, camera=False)]
    batch = collate_samples(samples, LAYOUT)
    got, _ = run_both(exported, samples)
    settings = {"score_threshold": 0.0}
    with torch.no_grad():
        eager = postprocess(model(batch)["objects"], batch, settings)
    onnx = postprocess(runtime.model_outputs(got, batch)["objects"], batch, settings)
    assert [len(d["score"]) for d in onnx] == [len(d["score"]) for d in eager] and sum(len(d["score"]) for d in eager) > 0
    for a, b in zip(onnx, eager):
        assert a["name"] == b["name"]
        np.testing.assert_allclose(a["boxes_lidar"], b["boxes_lidar"], atol=1e-4)
        np.testing.assert_allclose(a["score"], b["score"], atol=1e-5)


def test_numpy_pillarise_equals_torch() -> None:
    sample_a, sample_b = make_sample(20, 700), make_sample(21, 300)
    points = torch.cat([sample_a.inputs["lidar"], sample_b.inputs["lidar"]])
    points[::37, 2] = 5.0  # above the range: dropped
    batch_index = torch.cat([torch.zeros(700, dtype=torch.long), torch.ones(300, dtype=torch.long)])
    ref = pillarise(points, batch_index, tuple(DATA["point_range"]), 0.4)
    features, pillar_of_point, coords = pillarise_numpy(points.numpy(), batch_index.numpy(), tuple(DATA["point_range"]), 0.4)
    np.testing.assert_array_equal(coords, ref.coords.numpy())
    np.testing.assert_array_equal(pillar_of_point, ref.pillar_of_point.numpy())
    np.testing.assert_allclose(features, ref.features.numpy(), atol=1e-5)
    assert features.dtype == np.float32 and coords.shape[0] > 50


def test_adapter_refuses_a_one_frame_tracing_batch(exported: tuple) -> None:
    _, adapter, _, _, _ = exported
    with pytest.raises(ValueError, match="at least 2 frames"):
        adapter.example(collate_samples([make_sample(0, 100)], LAYOUT))


def test_triton_config_has_no_batching_for_ragged_pillars(exported: tuple, tmp_path: Path) -> None:
    from mmapps.export.triton import read_triton_config, write_triton_repository

    _, adapter, _, session, path = exported
    (tmp_path / "model.onnx").write_bytes(path.read_bytes())
    holder = type("S", (), {"inputs": adapter.inputs, "outputs": adapter.outputs})()
    config = read_triton_config(write_triton_repository(tmp_path, "driving", holder) / "config.pbtxt")
    assert config.max_batch_size == 0 and config.name == "driving" and config.backend == "onnxruntime"
    assert [i.name for i in config.input] == [i.name for i in session.get_inputs()]
    assert [o.name for o in config.output] == [o.name for o in session.get_outputs()]
    dims = {i.name: list(i.dims) for i in config.input}
    assert dims["lidar_point_features"] == [-1, 9] and dims["camera"] == [-1, 3, 32, 96]
    from tritonclient.grpc import model_config_pb2 as mc

    assert {i.name: i.data_type for i in config.input}["camera_present"] == mc.DataType.Value("TYPE_BOOL")


FUSIONS = list(get_domain("driving").fusions)  # every registered driving fusion


@pytest.mark.parametrize("fusion", FUSIONS)
def test_every_fusion_exports_with_parity(fusion: str, tmp_path: Path) -> None:
    import onnxruntime as ort

    from mmapps.export.onnx_write import write_onnx

    torch.manual_seed(0)
    cfg = validate_config({"domain": "driving", "data": {"options": DATA}, "model": {"fusion": {"name": fusion}, "options": MODEL}})
    model = build_model(cfg).eval()
    for module in model.modules():  # trained-looking batch-norm statistics, so every input matters
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    adapter = make_adapter(model)
    runtime = DrivingRuntime(adapter.preprocess(None))
    path = write_onnx(adapter, runtime.feeds(collate_samples([make_sample(0, 400), make_sample(1, 500)], LAYOUT)), tmp_path / "model.onnx", 18)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    batch = collate_samples([make_sample(5, 900), make_sample(6, 150, camera=False), make_sample(7, 620)], LAYOUT)
    feeds = runtime.feeds(batch)
    ref = adapter.reference(model, batch)
    got = dict(zip(names, session.run(names, feeds)))
    assert set(got) == set(ref)
    for name, value in ref.items():
        np.testing.assert_allclose(got[name], value, atol=1e-4, rtol=1e-3, err_msg=f"{fusion}: {name}")
    if "camera" in feeds:  # an absent camera slot is ignored whatever it holds
        feeds["camera"][1] = np.random.default_rng(0).uniform(-1e4, 1e4, feeds["camera"][1].shape).astype(np.float32)
        noisy = dict(zip(names, session.run(names, feeds)))
        for name in names:
            np.testing.assert_array_equal(noisy[name], got[name], err_msg=f"{fusion}: {name}")
    assert fusion != "lidar_only" or "camera" not in feeds  # the lidar-only graph takes no camera input
