"""The detector for every fusion: shapes, gradients, missing camera, losses, postprocess, metrics."""

import math

import pytest
import torch

from mmapps.config import validate_config
from mmapps.data import Sample, collate_samples
from mmapps_domains.driving.geometry import boxes_to_image_boxes, observation_angle
from mmapps_domains.driving.losses import box_regression_loss, build_targets, heatmap_focal_loss
from mmapps_domains.driving.metrics import detection_metrics
from mmapps_domains.driving.model import FUSION_NAMES, build_model
from mmapps_domains.driving.postprocess import decode_boxes, postprocess

TR = [[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0]]
P2 = [[400, 0, 600, 0], [0, 400, 180, 0], [0, 0, 1, 0]]
DATA = {"image_size": [32, 96], "point_range": [0, -6.4, -3, 12.8, 6.4, 1]}
MODEL = {"pillar_size": 0.4, "pfn_channels": 8, "backbone_channels": [8, 8], "head_channels": 8, "image_channels": 4}


def make_sample(i: int, with_camera: bool = True) -> Sample:
    g = torch.Generator().manual_seed(i)
    points = torch.cat([torch.rand(300, 1, generator=g) * 12, torch.rand(300, 1, generator=g) * 12 - 6, torch.rand(300, 1, generator=g) * 2 - 1.7, torch.rand(300, 1, generator=g)], 1)
    boxes = torch.tensor([[6.0, 1.0, -0.9, 3.9, 1.6, 1.5, 0.3]])
    to_model = torch.diag(torch.tensor([96 / 1242, 32 / 375, 1.0], dtype=torch.float64))
    l2i = (to_model @ torch.tensor(P2, dtype=torch.float64) @ torch.cat([torch.tensor(TR, dtype=torch.float64), torch.tensor([[0, 0, 0, 1.0]], dtype=torch.float64)])).tolist()
    cam = torch.tensor([[-1.0, 1.65, 6.0, 1.5, 1.6, 3.9, -0.3 - math.pi / 2]], dtype=torch.float64)
    bbox = boxes_to_image_boxes(cam, torch.tensor(P2, dtype=torch.float64), (375, 1242))[0].tolist()
    kitti = {"name": ["Car"], "truncated": [0.0], "occluded": [0], "alpha": observation_angle(cam).tolist(), "bbox": [bbox],
             "dimensions": [[3.9, 1.5, 1.6]], "location": [[-1.0, 1.65, 6.0]], "rotation_y": [-0.3 - math.pi / 2], "score": [0.0]}
    meta = {"frame_id": f"{i:06d}", "image_size": [375, 1242], "calib": {"P2": P2, "R0_rect": torch.eye(3).tolist(), "Tr_velo_to_cam": TR}, "lidar_to_image": l2i}
    camera = torch.randn(3, 32, 96, generator=g) if with_camera else None
    return Sample(f"{i:06d}", f"{i:06d}", {"lidar": points, "camera": camera}, {"objects": {"boxes": boxes, "labels": torch.tensor([0]), "kitti": kitti}}, meta)


def cfg_for(fusion: str):
    return validate_config({"domain": "driving", "data": {"options": DATA}, "model": {"fusion": {"name": fusion}, "options": MODEL}})


LAYOUT = {"lidar": "packed", "camera": "fixed"}


@pytest.mark.parametrize("fusion", FUSION_NAMES)
def test_forward_backward_every_fusion(fusion):
    torch.manual_seed(0)
    model = build_model(cfg_for(fusion))
    batch = collate_samples([make_sample(0), make_sample(1, with_camera=False)], LAYOUT)
    out = model(batch)["objects"]
    assert out["heatmap"].shape == (2, 3, 16, 16) and out["regression"].shape == (2, 8, 16, 16)
    loss = heatmap_focal_loss(out, batch.targets["objects"]) + box_regression_loss(out, batch.targets["objects"])
    assert torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
    if fusion != "lidar_only":
        assert model.image_net.net[0][0].weight.grad.abs().sum() > 0  # the camera reaches the loss


@pytest.mark.parametrize("fusion", ["painting", "bev"])
def test_absent_camera_contributes_nothing(fusion):
    torch.manual_seed(0)
    model = build_model(cfg_for(fusion)).eval()
    a = collate_samples([make_sample(0, with_camera=False), make_sample(1)], LAYOUT)
    b = collate_samples([make_sample(0, with_camera=False), make_sample(2)], LAYOUT)  # other image in the other sample
    with torch.no_grad():
        ha, hb = model(a)["objects"]["heatmap"], model(b)["objects"]["heatmap"]
    torch.testing.assert_close(ha[0], hb[0])


def test_targets_and_decode_round_trip():
    out = {"heatmap": torch.zeros(1, 3, 16, 16), "regression": torch.zeros(1, 8, 16, 16), "grid": {"x_min": 0.0, "y_min": -6.4, "cell": 0.8, "classes": ("Car", "Pedestrian", "Cyclist")}}
    box = torch.tensor([[6.1, 1.3, -0.9, 3.9, 1.6, 1.5, 0.3]])
    t = build_targets(out, [{"boxes": box, "labels": torch.tensor([0])}])
    assert t.heatmap[0, 0].max() == 1 and t.heatmap[0, 1:].max() == 0
    # logits that reproduce the targets decode to the same box
    out["heatmap"] = torch.where(t.heatmap > 0.99, 10.0, -10.0)
    out["regression"][0, :, t.row[0], t.col[0]] = t.codes[0]
    boxes, scores, cls = decode_boxes(out["heatmap"][0], out["regression"][0], out["grid"], pre_nms=5)
    torch.testing.assert_close(boxes[0], box[0], atol=1e-5, rtol=1e-5)
    assert cls[0] == 0 and scores[0] > 0.99


def test_postprocess_and_metrics_on_a_perfect_head():
    model = build_model(cfg_for("lidar_only")).eval()
    samples = [make_sample(i) for i in range(2)]
    batch = collate_samples(samples, LAYOUT)
    with torch.no_grad():
        out = model(batch)["objects"]
    t = build_targets(out, batch.targets["objects"])
    out["heatmap"] = torch.where(t.heatmap > 0.99, 10.0, -10.0)
    out["regression"] = torch.zeros_like(out["regression"])
    out["regression"][t.batch, :, t.row, t.col] = t.codes
    preds = postprocess(out, batch)
    assert preds[0]["name"] == ["Car"] and len(preds[0]["bbox"][0]) == 4
    cam = preds[0]["boxes_camera"][0]
    assert cam[:3] == pytest.approx([-1.0, 1.65, 6.0], abs=1e-4)
    from types import SimpleNamespace

    records = [SimpleNamespace(prediction=p, target=batch.targets["objects"][i]) for i, p in enumerate(preds)]
    metrics = detection_metrics(records, cfg_for("lidar_only"))
    # two ground-truth cars, both found: the devkit picks one score threshold per true positive,
    # so AP_R40 = (precision at thresholds 1..40) / 40 = 1/40 with 2 objects
    assert metrics["num_gt/Car/moderate"] == 2
    assert metrics["bev_ap_r40/Car/moderate"] == pytest.approx(1 / 40) and metrics["3d_ap_r40/Car/moderate"] == pytest.approx(1 / 40)
    assert metrics["aos_ap_r40/Car/moderate"] == pytest.approx(1 / 40, rel=1e-3)


@pytest.mark.parametrize("recipe", ["default", "kitti", "smoke", "quick"])
def test_every_recipe_resolves_and_builds(recipe):
    from mmapps.workflows.resolve import resolve_config
    from mmapps_domains.driving import domain

    cfg = resolve_config(domain, recipe)
    model = build_model(cfg)
    assert model.fusion in FUSION_NAMES and sum(p.numel() for p in model.parameters()) > 0


def test_camera_only_is_refused_and_lidar_subset_is_lidar_only():
    from mmapps.errors import ConfigError

    base = {"domain": "driving", "data": {"options": DATA}, "model": {"fusion": {"name": "painting"}, "options": MODEL}}
    with pytest.raises(ConfigError, match="needs 'lidar'"):
        build_model(validate_config({**base, "model": {**base["model"], "modalities": ["camera"]}}))
    assert build_model(validate_config({**base, "model": {**base["model"], "modalities": ["lidar"]}})).fusion == "lidar_only"


@pytest.mark.parametrize("fusion", ["painting", "bev"])
def test_batch_without_any_image_still_detects(fusion):
    torch.manual_seed(0)
    model = build_model(cfg_for(fusion)).eval()
    alone = collate_samples([make_sample(0, with_camera=False), make_sample(1, with_camera=False)], LAYOUT)
    assert alone.inputs["camera"].data is None  # the collate of an all-absent modality
    mixed = collate_samples([make_sample(0, with_camera=False), make_sample(1)], LAYOUT)
    with torch.no_grad():
        out = model(alone)["objects"]
        ref = model(mixed)["objects"]
    torch.testing.assert_close(out["heatmap"][0], ref["heatmap"][0])  # same as an absent camera in a mixed batch
    assert len(postprocess(out, alone)) == 2
