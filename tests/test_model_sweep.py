"""Sweep every core encoder, fusion and head: shapes, no NaN, gradients reach every parameter, masks honoured."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmapps.data import Sample, collate_samples
from mmapps.models.build import register_core_parts
from mmapps.models.fusion_model import FusionModel
from mmapps.models.types import EncoderOutput
from mmapps.registry import ENCODERS, FUSIONS, HEADS

register_core_parts()
CORE_ENCODERS = ENCODERS.list()
CORE_FUSIONS = FUSIONS.list()
CORE_HEADS = HEADS.list()
D = 8

# Encoder name -> (options, layout, value builder for one sample). Tiny inputs everywhere.
ENCODER_CASES = {
    "image_cnn": ({"backbone": "small_cnn", "in_channels": 1, "width": 4}, "padded", lambda i: torch.randn(1 + i % 2, 1, 32, 32)),
    "text_transformer": ({"max_length": 16}, "text", lambda i: ["no effusion", "cannot exclude pneumonia", "fight at gate"][i % 3]),
    "audio_cnn": ({"sample_rate": 8000, "n_mels": 16, "width": 4}, "padded", lambda i: torch.randn(4000 + 800 * i)),
    "video_cnn": ({"width": 4}, "padded", lambda i: torch.randn(8, 3, 16, 16)),
    "pointnet": ({"in_features": 4, "hidden": (8,)}, "packed", lambda i: torch.randn(100 + 50 * i, 4)),
    "tabular_mlp": ({"in_features": 5, "hidden": 8}, "fixed", lambda i: torch.randn(5)),
    "features_mlp": ({"in_features": 6}, "padded", lambda i: torch.randn(3 + i, 6)),
    "identity": ({}, "padded", lambda i: torch.randn(4, D)),
    "signal_resnet1d": ({"in_channels": 3, "width": 8, "stride": 4}, "padded", lambda i: torch.randn(40 + 12 * i, 3)),
}


def test_every_core_encoder_has_a_sweep_case():
    assert set(CORE_ENCODERS) == set(ENCODER_CASES), "add a case for each new encoder"


def _batch(name: str, absent: int | None = None):
    options, layout, make = ENCODER_CASES[name]
    samples = [Sample(f"s{i}", "g", {"x": None if i == absent else make(i)}) for i in range(3)]
    return collate_samples(samples, {"x": layout})


@pytest.mark.parametrize("name", CORE_ENCODERS)
def test_encoder_contract(name: str):
    options = ENCODER_CASES[name][0]
    encoder = ENCODERS.get(name)(dim=D, **options)
    batch = _batch(name, absent=1)
    out = encoder(batch.inputs["x"])
    assert isinstance(out, EncoderOutput)
    B, T, width = out.tokens.shape
    assert B == 3 and width == encoder.out_dim == D
    assert out.token_mask.shape == (B, T) and out.pooled.shape == (B, D)
    assert not out.token_mask[1].any(), "tokens of an absent sample must be masked out"
    assert torch.isfinite(out.tokens).all() and torch.isfinite(out.pooled).all()
    trainable = [(n, p) for n, p in encoder.named_parameters() if p.requires_grad]
    if trainable:
        (out.pooled[[0, 2]].sum() + out.tokens[out.token_mask].sum()).backward()
    missing = [n for n, p in trainable if p.grad is None]
    assert not missing, f"no gradient reached {missing[:5]}"


def _features(B: int = 3, T: int = 4, with_time: bool = False) -> tuple[dict, dict]:
    torch.manual_seed(0)
    dims = {"a": 6, "b": 5, "c": 7}
    feats = {}
    for m, d in dims.items():
        tokens = torch.randn(B, T, d, requires_grad=True)
        mask = torch.ones(B, T, dtype=torch.bool)
        feats[m] = EncoderOutput(tokens, mask, tokens.mean(1))
    present = {"a": torch.tensor([True, True, False]), "b": torch.tensor([True, False, True]), "c": torch.tensor([True, True, True])}
    return feats, present


@pytest.mark.parametrize("per_timestep", [False, True])
@pytest.mark.parametrize("name", CORE_FUSIONS)
def test_fusion_contract_and_absent_modality_contributes_nothing(name: str, per_timestep: bool):
    feats, present = _features()
    dims = {m: f.tokens.shape[-1] for m, f in feats.items()}
    fusion_options = {"per_timestep": True, "causal": True} if (name == "attention" and per_timestep) else {}
    fusion = FUSIONS.get(name)(modality_to_dim=dims, dim=D, **fusion_options)
    head = HEADS.get("timestep" if per_timestep else "multilabel")
    if fusion.level == "predictions":
        heads = nn.ModuleDict({"t": nn.ModuleDict({m: head(in_dim=d, num_labels=3) for m, d in dims.items()})})
    else:
        heads = nn.ModuleDict({"t": head(in_dim=fusion.out_dim, num_labels=3)})
    model = FusionModel(nn.ModuleDict({m: ENCODERS.get("identity")(dim=d) for m, d in dims.items()}), fusion, heads, per_timestep=per_timestep).eval()

    def run(features):
        from mmapps.data.sample import Batch, ModalityBatch

        inputs = {m: ModalityBatch(f.tokens, present[m], f.token_mask) for m, f in features.items()}
        return model(Batch(inputs, {}, ["0", "1", "2"], ["g"] * 3, [{}] * 3))["t"]

    out = run(feats)
    assert out.shape == ((3, 4, 3) if per_timestep else (3, 3))
    assert torch.isfinite(out).all()
    out.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient reached {missing}"
    # Changing the data of an absent modality must not change any output.
    changed = dict(feats)
    noise = feats["a"].tokens.detach().clone()
    noise[2] = 100.0
    changed["a"] = EncoderOutput(noise, feats["a"].token_mask, noise.mean(1))
    assert torch.allclose(run(feats), run(changed), atol=1e-5)


@pytest.mark.parametrize("name", CORE_HEADS)
def test_head_shapes(name: str):
    from mmapps.models.types import FusionOutput

    head = HEADS.get(name)(in_dim=D, num_labels=5)
    pooled = torch.randn(2, 4, D) if name == "timestep" else torch.randn(2, D)
    out = head(FusionOutput(pooled))
    assert out.shape == pooled.shape[:-1] + (5,)
    out.sum().backward()
    assert all(p.grad is not None for p in head.parameters())


def test_timestep_head_temporal_context_is_causal():
    from mmapps.models.types import FusionOutput

    torch.manual_seed(0)
    head = HEADS.get("timestep")(in_dim=D, num_labels=3, temporal_kernel=3).eval()
    x = torch.randn(2, 6, D)
    before = head(FusionOutput(x))
    changed = x.clone()
    changed[:, 4] += 10.0
    after = head(FusionOutput(changed))
    assert torch.allclose(before[:, :4], after[:, :4])  # earlier steps never see later ones
    assert not torch.allclose(before[:, 5], after[:, 5])  # later steps see the change within the kernel
    head(FusionOutput(x)).sum().backward()
    assert head.temporal.weight.grad is not None


def test_causal_attention_does_not_see_the_future():
    feats, present = _features()
    dims = {m: f.tokens.shape[-1] for m, f in feats.items()}
    fusion = FUSIONS.get("attention")(modality_to_dim=dims, dim=D, per_timestep=True, causal=True, dropout=0.0).eval()
    before = fusion(feats, present).pooled
    future = {m: EncoderOutput(f.tokens.detach().clone(), f.token_mask, f.pooled) for m, f in feats.items()}
    future["c"].tokens[:, -1] += 50.0  # change only the last time step
    after = fusion(future, present).pooled
    assert torch.allclose(before[:, :-1], after[:, :-1], atol=1e-5)
    assert not torch.allclose(before[:, -1], after[:, -1])


def test_alibi_attention_is_causal_equal_under_no_grad_and_shift_invariant():
    from mmapps.models.fusions.attention import alibi_bias, alibi_slopes

    feats, present = _features()
    dims = {m: f.tokens.shape[-1] for m, f in feats.items()}
    fusion = FUSIONS.get("attention")(modality_to_dim=dims, dim=D, per_timestep=True, causal=True, dropout=0.0, positions="alibi").eval()
    before = fusion(feats, present).pooled
    with torch.no_grad():  # PyTorch's inference fast path must not change the result
        assert torch.allclose(fusion(feats, present).pooled, before, atol=1e-5)
    future = {m: EncoderOutput(f.tokens.detach().clone(), f.token_mask, f.pooled) for m, f in feats.items()}
    future["c"].tokens[:, -1] += 50.0
    after = fusion(future, present).pooled
    assert torch.allclose(before[:, :-1], after[:, :-1], atol=1e-5) and not torch.allclose(before[:, -1], after[:, -1])
    # hand-worked bias: slopes 2^-4, 2^-8 for 2 heads; the summary token (time -1) is never penalised
    assert torch.allclose(alibi_slopes(2), torch.tensor([2.0**-4, 2.0**-8]))
    bias = alibi_bias(torch.tensor([-1, 0, 3]), torch.tensor([-1, 0, 3]), alibi_slopes(2))
    assert torch.allclose(bias[0], torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, -3 / 16], [0.0, -3 / 16, 0.0]]))
    # only time distances matter: the same history at a later start gives the same bias
    assert torch.equal(alibi_bias(torch.tensor([5, 7]), torch.tensor([5, 6, 7]), alibi_slopes(4)), alibi_bias(torch.tensor([0, 2]), torch.tensor([0, 1, 2]), alibi_slopes(4)))
    with pytest.raises(ValueError, match="positions"):
        FUSIONS.get("attention")(modality_to_dim=dims, dim=D, per_timestep=True, positions="rotary")


def test_modality_dropout_keeps_one_modality():
    from mmapps.models.fusion_model import drop_modalities

    torch.manual_seed(0)
    present = {"a": torch.ones(500, dtype=torch.bool), "b": torch.ones(500, dtype=torch.bool)}
    dropped = drop_modalities(present, 0.9)
    kept = torch.stack(list(dropped.values()), 1)
    assert kept.any(1).all()
    assert 0.3 < (~kept).float().mean() < 0.6
