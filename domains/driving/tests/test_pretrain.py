"""Driving pretraining: range-aware pillar masks, no leak from hidden pillars or patches, occupancy over empty cells."""

import math

import numpy as np
import pytest
import torch

from mmapps.config import validate_config
from mmapps.data import Sample, collate_samples
from mmapps.pretrain.build import build_pretrain_model
from mmapps.pretrain.contract import MaskKeys
from mmapps.pretrain.masking import hidden_count
from mmapps_domains.driving import domain
from mmapps_domains.driving.model import build_model
from mmapps_domains.driving.pretrain_masking import block_edges, block_ids, draw_pillar_mask, occupancy_targets
from mmapps_domains.driving.preprocess import grid_shape, pillarise

TR = [[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0]]
P2 = [[400, 0, 600, 0], [0, 400, 180, 0], [0, 0, 1, 0]]
DATA = {"image_size": [32, 96], "point_range": [0, -6.4, -3, 12.8, 6.4, 1]}
MODEL = {"pillar_size": 0.4, "pfn_channels": 8, "backbone_channels": [8, 8], "head_channels": 8, "image_channels": 4}
LAYOUT = {"lidar": "packed", "camera": "fixed"}


def frame(i: int, with_camera: bool = True) -> Sample:
    g = torch.Generator().manual_seed(i)
    n = 400
    points = torch.cat([torch.rand(n, 1, generator=g) * 12.8, torch.rand(n, 1, generator=g) * 12.8 - 6.4,
                        torch.rand(n, 1, generator=g) * 3 - 2.5, torch.rand(n, 1, generator=g)], 1)
    to_model = torch.diag(torch.tensor([96 / 1242, 32 / 375, 1.0], dtype=torch.float64))
    l2i = (to_model @ torch.tensor(P2, dtype=torch.float64) @ torch.cat([torch.tensor(TR, dtype=torch.float64), torch.tensor([[0, 0, 0, 1.0]], dtype=torch.float64)])).tolist()
    camera = torch.randn(3, 32, 96, generator=g) if with_camera else None
    meta = {"frame_id": f"{i:06d}", "lidar_to_image": l2i}
    return Sample(f"{i:06d}", f"{i:06d}", {"lidar": points, "camera": camera}, {}, meta)


def pretrain_model(fusion: str, options: dict | None = None):
    cfg = validate_config({"domain": "driving", "data": {"options": DATA}, "model": {"fusion": {"name": fusion}, "options": MODEL},
                           "pretrain": {"whole_modality": 0.0, "contrastive_weight": 0.0, "options": {"camera_patch": 16, **(options or {})}}})
    torch.manual_seed(0)
    modalities = ["camera", "lidar"] if fusion != "lidar_only" else ["lidar"]
    return build_pretrain_model(cfg, domain, build_model(cfg), modalities)[0]


def encode(pm, batch, keys):
    """The lidar and camera tokens of one masked step (the core's draw -> encode order)."""
    inputs = {m: batch.inputs[m] for m in pm.modalities if batch.inputs[m].data is not None}
    for m in pm.modalities:
        pm.objectives[m].bind(batch)
    masks = {m: pm.objectives[m].draw(inputs[m], keys, i) for i, m in enumerate(inputs)}
    return masks, {m: pm.objectives[m].encode(pm._encoders[m], inputs[m], masks[m]).output for m in inputs}


def test_block_edge_grows_with_range():
    coords = torch.tensor([[0, 16, 2], [0, 16, 60], [0, 16, 110]])  # 1 m, 24 m and 44 m ahead at 0.4 m pillars
    edges = block_edges(coords, (0, -6.4, -3, 50, 6.4, 1), 0.4, block_m=1.2, growth_m=20.0)
    assert edges.tolist() == [3, 6, 12]
    ids = block_ids(torch.tensor([[0, 0, 0], [0, 2, 2], [0, 3, 3], [1, 0, 0]]), (32, 32), torch.tensor([3, 3, 3, 3]))
    assert ids[0] == ids[1] != ids[2] and ids[0] != ids[3]  # same 3x3 block; next block; other sample


def test_pillar_masks_reproducible_and_honour_ratio():
    batch = collate_samples([frame(0), frame(1)], LAYOUT)
    points, offsets = batch.inputs["lidar"].data, batch.inputs["lidar"].offsets
    batch_index = torch.repeat_interleave(torch.arange(2), offsets[1:] - offsets[:-1])
    pillars = pillarise(points, batch_index, DATA["point_range"], 0.4)
    args = ((32, 32), DATA["point_range"], 0.4, 0.7, 1.2, 20.0)
    a = draw_pillar_mask(pillars.coords, MaskKeys(0, 3, tuple(batch.sample_ids)), 5, *args)
    b = draw_pillar_mask(pillars.coords, MaskKeys(0, 3, tuple(batch.sample_ids)), 5, *args)
    c = draw_pillar_mask(pillars.coords, MaskKeys(0, 4, tuple(batch.sample_ids)), 5, *args)
    assert torch.equal(a, b) and not torch.equal(a, c)
    swapped = draw_pillar_mask(pillars.coords, MaskKeys(0, 3, tuple(reversed(batch.sample_ids))), 5, *args)
    assert not torch.equal(a, swapped)  # keyed on the sample id, not on its place in the batch
    blocks = block_ids(pillars.coords, (32, 32), block_edges(pillars.coords, DATA["point_range"], 0.4, 1.2, 20.0))
    for s in range(2):
        own = pillars.coords[:, 0] == s
        n = torch.unique(blocks[own]).numel()
        hidden_blocks = torch.unique(blocks[own & a]).numel()
        assert hidden_blocks == hidden_count(n, 0.7)
        assert torch.unique(blocks[own & a]).numel() + torch.unique(blocks[own & ~a]).numel() == n  # whole blocks


@pytest.mark.parametrize("fusion", ["painting", "bev", "lidar_only"])
def test_hidden_pillars_and_patches_do_not_leak(fusion):
    pm = pretrain_model(fusion).train()
    samples = [frame(0), frame(1)]
    batch = collate_samples(samples, LAYOUT)
    keys = MaskKeys(0, 0, tuple(batch.sample_ids))
    masks, tokens = encode(pm, batch, keys)
    drop = masks["lidar"].extra["drop_point"]
    assert 0 < int(drop.sum()) < drop.numel()
    # hidden points move inside their pillars (height, intensity) and a copy of each is added
    points = batch.inputs["lidar"].data.clone()
    points[drop, 2] = torch.rand(int(drop.sum())) * 3 - 2.9
    points[drop, 3] = 1 - points[drop, 3]
    offsets = batch.inputs["lidar"].offsets
    changed = []
    for s in range(2):
        own = points[offsets[s]:offsets[s + 1]]
        extra = own[drop[offsets[s]:offsets[s + 1]]]
        camera = samples[s].inputs["camera"].clone()
        if fusion != "lidar_only":
            hidden = masks["camera"].hidden[s].view(2, 6).repeat_interleave(16, 0).repeat_interleave(16, 1)
            camera[:, hidden] = torch.randn(3, int(hidden.sum())) * 5
        changed.append(Sample(samples[s].sample_id, samples[s].group_id, {"lidar": torch.cat([own, extra]), "camera": camera}, {}, samples[s].meta))
    masks2, tokens2 = encode(pm, collate_samples(changed, LAYOUT), keys)
    torch.testing.assert_close(masks2["lidar"].hidden, masks["lidar"].hidden)
    torch.testing.assert_close(tokens2["lidar"].tokens, tokens["lidar"].tokens)
    if fusion != "lidar_only":
        torch.testing.assert_close(tokens2["camera"].tokens, tokens["camera"].tokens)
    # and the visible content does reach the tokens (the test can fail)
    visible_moved = [Sample(s.sample_id, s.group_id, {"lidar": s.inputs["lidar"] + torch.tensor([0, 0, 0.3, 0]), "camera": s.inputs["camera"]}, {}, s.meta) for s in samples]
    _, tokens3 = encode(pm, collate_samples(visible_moved, LAYOUT), keys)
    assert not torch.allclose(tokens3["lidar"].tokens, tokens["lidar"].tokens)


def test_camera_decoder_starts_at_the_per_position_mean_predictor():
    """The camera decoder predicts a residual over the pool's mean patch per position (its last layer starts at zero)."""
    from mmapps.pretrain.baseline import evaluate, fit_statistics

    def scene(i):  # a sky-to-road brightness ramp (the same at every position of every frame) plus noise
        s = frame(i)
        ramp = torch.linspace(1.0, -1.0, 32).view(1, 32, 1).expand(3, 32, 96)
        return Sample(s.sample_id, s.group_id, {**s.inputs, "camera": ramp * 2 + 0.3 * s.inputs["camera"] + torch.linspace(0, 1, 96)}, {}, s.meta)

    pm = pretrain_model("painting")
    pool = [collate_samples([scene(i), scene(i + 1)], LAYOUT) for i in range(0, 8, 2)]
    held_out = [collate_samples([scene(20), scene(21)], LAYOUT)]
    unfitted = evaluate(pm, held_out, torch.device("cpu"))
    means = fit_statistics(pm, pool)
    start = evaluate(pm, held_out, torch.device("cpu"), means)
    assert start["loss/camera"] == pytest.approx(start["trivial/camera"], rel=1e-4)
    assert unfitted["loss/camera"] > 1.2 * start["loss/camera"]  # without the prior the decoder would start far above the trivial predictor


def test_occupancy_targets_and_loss_cover_empty_cells():
    pr = (0.0, -2.0, -2.0, 4.0, 2.0, 2.0)
    points = torch.tensor([[0.5, -1.5, -1.9, 0.1], [0.6, -1.4, 1.5, 0.2], [0.7, -1.3, 1.6, 0.3], [3.5, 1.5, 0.1, 0.4]])
    t = occupancy_targets(points, torch.zeros(4, dtype=torch.long), 1, pr, 1.0, z_bins=4)
    assert t.occupancy.shape == (1, 4, 4, 4) and t.in_range.all()
    assert t.occupancy[0, :, 0, 0].tolist() == [1, 0, 0, 1] and t.occupancy[0, :, 3, 3].tolist() == [0, 0, 1, 0]
    assert t.occupancy.sum() == 3 and float(t.log_count[0, 0, 0, 0]) == pytest.approx(math.log(4)) and t.log_count.sum() == pytest.approx(math.log(4) + math.log(2))
    # the objective's loss against a NumPy oracle over all 16 cells (14 of them empty), hidden or not
    pm = pretrain_model("lidar_only")
    objective = pm.objectives["lidar"]
    from mmapps.pretrain.contract import ModalityTarget

    values = torch.cat([t.occupancy, t.log_count], 1).flatten(2).transpose(1, 2)  # (1, 16, Z+1)
    Z = objective.options.z_bins
    values = torch.cat([values[..., :4].repeat(1, 1, Z // 4), values[..., 4:]], -1)
    prediction = torch.cat([torch.rand(1, 16, Z) * 0.98 + 0.01, torch.randn(1, 16, 1)], -1).requires_grad_()  # probabilities, log count
    loss = objective.loss(prediction, ModalityTarget(values, torch.ones(1, 16)))
    p, y = prediction.detach().numpy()[0], values.numpy()[0]
    bce = -(y[:, :Z] * np.log(p[:, :Z]) + (1 - y[:, :Z]) * np.log(1 - p[:, :Z])).mean(1)
    d = np.abs(p[:, Z] - y[:, Z])
    huber = np.where(d < 1, 0.5 * d ** 2, d - 0.5)
    assert float(loss.detach()) == pytest.approx(float((bce + huber).mean()), rel=1e-5)
    loss.backward()
    empty = (y[:, :Z].sum(1) == 0).nonzero()[0]
    assert len(empty) == 14 and (prediction.grad[0, empty].abs().sum(1) > 0).all()  # every empty cell is a negative


def test_in_range_cells_follow_the_camera_view():
    pm = pretrain_model("painting")
    batch = collate_samples([frame(0)], LAYOUT)
    pm.objectives["lidar"].bind(batch)
    mask = pm.objectives["lidar"].draw(batch.inputs["lidar"], MaskKeys(0, 0, tuple(batch.sample_ids)), 0)
    ny, nx = grid_shape(tuple(DATA["point_range"]), 0.4)
    real = mask.real.view(ny, nx)
    assert real.any() and not real.all()  # cells outside the camera's field of view are not scored
    assert real[ny // 2, nx - 1] and not real[0, 0]  # straight ahead, far: seen; beside the sensor: not


def test_documented_command_resolves_and_bad_options_are_refused():
    import re
    import shlex
    from pathlib import Path

    from mmapps.errors import ConfigError
    from mmapps.models.build import build_model as build_domain_model
    from mmapps.pretrain.recipes import resolve_pretrain_config

    text = (Path(__file__).resolve().parents[3] / "docs" / "pretraining.md").read_text()
    section = text.split("\n## Driving\n")[1].split("\n## ")[0]
    line = next(x for x in re.findall(r"```bash\n(.*?)```", section, flags=re.S)[0].splitlines() if x.startswith("mmapps driving pretrain"))
    argv = shlex.split(line)
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    cfg = resolve_pretrain_config(domain, argv[argv.index("--recipe") + 1], None, sets)
    pm, transferred = build_pretrain_model(cfg, domain, build_domain_model(cfg, domain), ["camera", "lidar"])
    assert pm.objectives["lidar"].ratio == 0.6 and pm.objectives["lidar"].options.z_bins == 4 and transferred == ("image_net", "pfn", "backbone")
    for bad, words in ((["pretrain.options.zbins=4"], ["pretrain.options", "zbins"]), (["pretrain.options.camera_patch=12"], ["camera_patch", "image_size"])):
        cfg = resolve_pretrain_config(domain, "smoke", None, bad)
        with pytest.raises(ConfigError) as err:
            build_pretrain_model(cfg, domain, build_domain_model(cfg, domain), ["camera", "lidar"])
        assert all(w in str(err.value) for w in words), str(err.value)
