"""Masking per encoder kind: hidden content never reaches a visible token; draws are keyed, exact and never hide all."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmapps.config import validate_config
from mmapps.data.sample import ModalityBatch
from mmapps.domain import ModalitySpec
from mmapps.models.build import register_core_parts
from mmapps.pretrain.contract import MaskKeys, ModalityMask
from mmapps.pretrain.kinds import core_objective
from mmapps.pretrain.masking import draw_units, hidden_count
from mmapps.pretrain.model import hide_whole
from mmapps.registry import ENCODERS

register_core_parts()
IDS = ("a", "b", "c")


def _cfg(**pretrain):
    return validate_config({"domain": "x", "model": {"dim": 16}, "pretrain": {"decoder_layers": 1, **pretrain}})


def _objective(encoder, kind="image"):
    return core_objective("m", encoder, ModalitySpec("m", kind, "test"), _cfg(), 16, ("m", "other"))


def _perturbed(data: torch.Tensor, hidden_input: torch.Tensor) -> torch.Tensor:
    noise = torch.randn_like(data.float()) * 5 + 3
    return torch.where(hidden_input, noise, data.float())


def _assert_visible_equal(objective, encoder, mb, mask, perturbed_mb):
    for train in (True, False):  # training mode: batch statistics must not see hidden content either
        encoder.train(train)
        torch.manual_seed(0)
        a = objective.encode(encoder, mb, mask).output
        torch.manual_seed(0)
        b = objective.encode(encoder, perturbed_mb, mask).output
        assert torch.equal(a.token_mask, b.token_mask)
        visible = a.token_mask
        assert visible.any() and (~visible).any()
        assert torch.allclose(a.tokens[visible], b.tokens[visible], atol=1e-5), f"hidden content leaked into visible tokens (train={train})"


@pytest.mark.parametrize("backbone", ["small_cnn", "resnet18"])
def test_cnn_image_hidden_patches_never_reach_visible_tokens(backbone):
    encoder = ENCODERS.get("image_cnn")(dim=16, backbone=backbone, in_channels=1, width=4)
    size = 64 if backbone == "resnet18" else 32
    mb = ModalityBatch(torch.rand(3, 2, 1, size, size), torch.ones(3, dtype=torch.bool), torch.tensor([[True, True], [True, False], [True, True]]))
    objective = _objective(encoder)
    mask = objective.draw(mb, MaskKeys(0, 0, IDS), 0)
    E, h, w = mask.grid
    p = objective.patch
    hidden_px = mask.hidden.view(3, E, h, w).repeat_interleave(p, 2).repeat_interleave(p, 3).unsqueeze(2)  # (B, E, 1, H, W)
    _assert_visible_equal(objective, encoder, mb, mask, ModalityBatch(_perturbed(mb.data, hidden_px), mb.present, mb.mask))


def test_sparse_batch_norm_statistics_use_visible_units_only():
    encoder = ENCODERS.get("image_cnn")(dim=8, backbone="small_cnn", in_channels=1, width=4)
    objective = _objective(encoder)
    mb = ModalityBatch(torch.rand(3, 1, 32, 32), torch.ones(3, dtype=torch.bool))
    mask = objective.draw(mb, MaskKeys(0, 0, IDS), 0)
    _, h, w = mask.grid
    p = objective.patch
    hidden_px = mask.hidden.view(3, h, w).repeat_interleave(p, 1).repeat_interleave(p, 2).unsqueeze(1)  # (B, 1, H, W)
    encoder.train()
    bn = encoder.trunk[1]
    objective.encode(encoder, mb, mask)
    first = (bn.running_mean.clone(), bn.running_var.clone())
    bn.reset_running_stats()
    objective.encode(encoder, ModalityBatch(_perturbed(mb.data, hidden_px), mb.present), mask)
    assert torch.allclose(first[0], bn.running_mean) and torch.allclose(first[1], bn.running_var)
    assert "forward" not in bn.__dict__  # the sparse forward is removed after encoding
    plain = encoder(mb)  # and the encoder is an ordinary dense CNN again
    assert plain.token_mask.all()


def test_frozen_text_hides_the_whole_note_and_targets_frozen_features():
    encoder = ENCODERS.get("text_transformer")(dim=16, max_length=16)
    objective = core_objective("note", encoder, ModalitySpec("note", "text", "t", layout="text"), _cfg(mask_ratio={"note": 0.5}), 16, ("image", "note"))
    texts = ["left lung is clear", "heart size is normal", "small effusion on the right"]
    mb = ModalityBatch(texts, torch.ones(3, dtype=torch.bool))
    masks = [objective.draw(mb, MaskKeys(s, 0, IDS), 1) for s in range(12)]
    whole = torch.stack([m.whole for m in masks])
    assert whole.any() and (~whole).any()
    mask = next(m for m in masks if m.whole.any() and (~m.whole).any())
    out = objective.encode(encoder, mb, mask).output
    assert not out.token_mask[mask.whole].any() and out.token_mask[~mask.whole].any()
    target = objective.target(encoder, mb, mask)
    assert torch.equal(target.weight.bool(), mask.whole.unsqueeze(1) & mask.real)
    hidden, _ = encoder._encode(texts)
    assert torch.allclose(target.values, torch.nn.functional.layer_norm(hidden, (hidden.shape[-1],)))  # a fixed function of frozen features


def test_frozen_text_sentence_target_is_the_layer_normed_mean_of_the_real_tokens_one_unit_per_note():
    encoder = ENCODERS.get("text_transformer")(dim=16, max_length=16)
    objective = core_objective("note", encoder, ModalitySpec("note", "text", "t", layout="text"), _cfg(mask_ratio={"note": 0.5}, frozen_text_target="sentence"), 16, ("image", "note"))
    texts = ["left lung is clear", "heart size is normal and the mediastinum is not widened", "effusion"]  # different lengths: padding must not count
    mb = ModalityBatch(texts, torch.tensor([True, True, False]))  # the third note absent
    mask = next(m for s in range(20) if (m := objective.draw(mb, MaskKeys(s, 0, IDS), 1)).whole[:2].any() and not m.whole[:2].all())
    assert mask.grid == (1,) and mask.real.tolist() == [[True], [True], [False]] and not mask.whole[2]
    target = objective.target(encoder, mb, mask)
    hidden, token_mask = encoder._encode(texts)
    for b in range(2):
        mean = hidden[b][token_mask[b]].mean(0)
        assert torch.allclose(target.values[b, 0], torch.nn.functional.layer_norm(mean, mean.shape), atol=1e-5)
    assert torch.equal(target.weight.bool(), mask.whole.unsqueeze(1) & mask.real)
    out = objective.encode(encoder, mb, mask)
    assert not out.output.token_mask[mask.whole].any() and (out.positions == -1).all()
    assert "sentence" in objective.target_name


def test_trained_text_masks_tokens_at_the_input():
    encoder = ENCODERS.get("text_transformer")(dim=16, max_length=16, finetune="full")
    objective = core_objective("note", encoder, ModalitySpec("note", "text", "t", layout="text"), _cfg(mask_ratio={"note": 0.3}), 16, ("image", "note"))
    texts = ["left lung is clear today", "left lung is dark today"]
    ids = encoder.tokenizer(texts, padding=True, return_tensors="pt")["input_ids"]
    differ = (ids[0] != ids[1]).nonzero().squeeze(1)
    assert differ.numel() == 1  # the two notes differ in one word piece
    drawn = objective.draw(ModalityBatch(texts, torch.ones(2, dtype=torch.bool)), MaskKeys(0, 0, ("a", "b")), 1)
    assert (drawn.extra["masked_ids"][drawn.hidden] == encoder.tokenizer.mask_token_id).all() and drawn.hidden.any()
    singles = []
    for text in texts:
        mb = ModalityBatch([text], torch.ones(1, dtype=torch.bool))
        mask = objective.draw(mb, MaskKeys(0, 0, ("a",)), 1)
        mask.hidden[:] = False
        mask.hidden[:, differ] = True
        mask.extra["masked_ids"] = mask.extra["ids"].masked_fill(mask.hidden, encoder.tokenizer.mask_token_id)
        singles.append((mb, mask))
    encoder.eval()
    a, b = (objective.encode(encoder, mb, mask).output for mb, mask in singles)
    assert torch.allclose(a.tokens, b.tokens, atol=1e-5)  # the hidden word is [MASK] for the encoder: nothing of it leaks
    target = objective.target(encoder, *singles[0])
    assert int(target.values[0, differ, 0]) == int(ids[0, differ]) and torch.equal(target.weight.bool(), singles[0][1].hidden)


@pytest.mark.parametrize("case", ["audio_windows", "audio_wave", "video_windows", "video_frames", "features", "signal", "signal_windows", "tabular"])
def test_time_and_column_units_never_reach_visible_tokens(case):
    B = 3
    if case.startswith("audio"):
        encoder = ENCODERS.get("audio_cnn")(dim=16, n_mels=16, width=4)
        data = torch.randn(B, 6, 1600) if case == "audio_windows" else torch.randn(B, 16000)
        kind = "audio"
    elif case.startswith("video"):
        encoder = ENCODERS.get("video_cnn")(dim=16, width=4)
        data = torch.rand(B, 6, 2, 3, 16, 16) if case == "video_windows" else torch.rand(B, 6, 3, 16, 16)
        kind = "video"
    elif case == "features":
        encoder, data, kind = ENCODERS.get("features_mlp")(dim=16, in_features=5), torch.randn(B, 8, 5), "features"
    elif case.startswith("signal"):
        encoder = ENCODERS.get("signal_resnet1d")(dim=16, in_channels=2, width=8, stride=8)
        data, kind = (torch.randn(B, 128, 2) if case == "signal" else torch.randn(B, 6, 64, 2)), "signal"
    else:
        encoder, data, kind = ENCODERS.get("tabular_mlp")(dim=16, in_features=6), torch.randn(B, 6), "tabular"
    objective = _objective(encoder, kind)
    mb = ModalityBatch(data, torch.ones(B, dtype=torch.bool))
    mask = objective.draw(mb, MaskKeys(0, 0, IDS), 0)
    assert mask.hidden.any() and mask.visible.any()
    U = mask.hidden.shape[1]
    if case == "audio_wave" or case == "signal":  # unit u covers `stride` samples
        stride = data.shape[1] // U if case == "audio_wave" else encoder.stride
        per_sample = mask.hidden.repeat_interleave(stride, 1)
        per_sample = torch.cat([per_sample, per_sample[:, -1:].expand(-1, data.shape[1] - per_sample.shape[1])], 1)[:, : data.shape[1]]
        hidden_input = per_sample.view(B, data.shape[1], *([1] * (data.dim() - 2))).expand_as(data)
    else:
        hidden_input = mask.hidden.view(B, U, *([1] * (data.dim() - 2))).expand_as(data)
    perturbed = ModalityBatch(_perturbed(data, hidden_input), mb.present)
    if case == "tabular":  # one token for the row: the hidden columns' values must not change it
        for train in (True, False):
            encoder.train(train)
            a, b = objective.encode(encoder, mb, mask).output, objective.encode(encoder, perturbed, mask).output
            assert torch.allclose(a.tokens, b.tokens)
        return
    _assert_visible_equal(objective, encoder, mb, mask, perturbed)
    target = objective.target(encoder, mb, mask)
    assert target.values.shape[:2] == mask.hidden.shape and torch.equal(target.weight.bool(), mask.hidden & mask.real)


def test_masks_are_reproducible_from_seed_id_and_epoch_and_honour_the_ratio():
    real = torch.ones(3, 50, dtype=torch.bool)
    real[1, 30:] = False
    a = draw_units(real, MaskKeys(7, 2, IDS), 0, 0.6, block=4)
    assert torch.equal(a, draw_units(real, MaskKeys(7, 2, IDS), 0, 0.6, block=4))
    assert torch.equal(a[1], draw_units(real[1:2], MaskKeys(7, 2, ("b",)), 0, 0.6, block=4)[0])  # per sample id, not batch position
    assert not torch.equal(a, draw_units(real, MaskKeys(7, 3, IDS), 0, 0.6, block=4))
    assert not torch.equal(a, draw_units(real, MaskKeys(8, 2, IDS), 0, 0.6, block=4))
    assert not torch.equal(a, draw_units(real, MaskKeys(7, 2, IDS), 1, 0.6, block=4))
    assert a.sum(1).tolist() == [30, 18, 30] and not (a & ~real).any()
    for ratio in (0.0, 0.15, 0.5, 0.75, 0.99):
        drawn = draw_units(real, MaskKeys(0, 0, IDS), 0, ratio)
        assert drawn.sum(1).tolist() == [hidden_count(int(n), ratio) for n in real.sum(1)]
    assert hidden_count(1, 0.9) == 0 and hidden_count(10, 0.99) == 9  # at least one unit stays visible


def test_whole_modality_masking_never_hides_all_of_a_sample():
    rng = np.random.default_rng(0)
    for trial in range(40):
        B = 16
        ids = tuple(f"s{trial}-{i}" for i in range(B))
        masks = {}
        for name, units in (("image", 4), ("note", 3), ("tab", 1)):
            real = torch.from_numpy(rng.random((B, 1)) < 0.7).expand(B, units).clone()
            hidden = draw_units(real, MaskKeys(trial, 0, ids), 0, 0.6)
            whole = torch.from_numpy(rng.random(B) < 0.8) & real.any(1) if name == "note" else torch.zeros(B, dtype=torch.bool)
            masks[name] = ModalityMask(hidden | (whole.unsqueeze(1) & real), real, whole, (units,))
        hide_whole(masks, {"image", "note", "tab"}, MaskKeys(trial, 0, ids), 0.9)
        any_real = torch.stack([m.real.any(1) for m in masks.values()]).any(0)
        any_visible = torch.stack([m.visible.any(1) for m in masks.values()]).any(0)
        assert torch.equal(any_visible, any_real), "a sample with data lost every modality"
        assert any(m.whole.any() for m in masks.values())
