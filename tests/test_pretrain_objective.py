"""The objective: L = sum_m lambda_m L_m (+ contrastive), lambda_m = 0 removes a gradient, and learning beats the mean predictor."""

from __future__ import annotations

import math

import pytest
import torch

from mmapps.config import validate_config
from mmapps.data.sample import Sample, collate_samples
from mmapps.domain import Domain, ModalitySpec, TaskSpec
from mmapps.errors import ConfigError
from mmapps.models.build import build_fusion_model, register_core_parts
from mmapps.pretrain.baseline import evaluate, fit_statistics
from mmapps.pretrain.build import build_pretrain_model

register_core_parts()

DOMAIN = Domain(
    name="toy",
    description="toy",
    modalities=(ModalitySpec("image", "image", "t"), ModalitySpec("series", "features", "t", layout="fixed"), ModalitySpec("table", "tabular", "t")),
    tasks=(TaskSpec("y", "multiclass", ("a", "b"), {}, "mmapps.tasks.postprocess:softmax_scores", "mmapps.tasks.metrics:multiclass_metrics", "accuracy"),),
    build_datasets="x:y",
    write_demo_data="x:y",
    recipes={"default": {}, "smoke": {}},
)
MODEL = {
    "dim": 32,
    "encoders": {
        "image": {"name": "image_cnn", "options": {"backbone": "small_cnn", "in_channels": 1, "width": 8}},
        "series": {"name": "features_mlp", "options": {"in_features": 3}},
        "table": {"name": "tabular_mlp", "options": {"in_features": 6, "hidden": 32}},
    },
    "fusion": {"name": "attention", "options": {"layers": 1, "heads": 2, "dropout": 0.0}},
}


def _cfg(**pretrain):
    return validate_config({"domain": "toy", "model": MODEL, "pretrain": {"decoder_layers": 1, "decoder_heads": 2, **pretrain}})


def _samples(n: int, seed: int) -> list[Sample]:
    """Every modality is a view of one latent (stripe orientation, frequency, phase, scale), so each is predictable from the others."""
    g = torch.Generator().manual_seed(seed)
    samples = []
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    for i in range(n):
        vertical, f, phase, scale = (torch.rand(4, generator=g) * torch.tensor([1.0, 0.8, 6.28, 2.0]) + torch.tensor([0.0, 0.4, 0.0, 0.5])).tolist()
        vertical = float(vertical < 0.5)
        stripes = 0.9 if f < 0.8 else 1.7  # two stripe frequencies x two orientations: the visible patches (or the table) tell which
        image = (torch.sin(stripes * (xx if vertical else yy)) * scale).unsqueeze(0)
        t = torch.arange(8.0).unsqueeze(1)
        series = torch.cat([torch.sin(f * t + phase), torch.cos(f * t + phase), scale * torch.ones(8, 1)], 1)
        table = torch.tensor([vertical, f, phase, scale, f * scale, math.sin(phase)])
        samples.append(Sample(f"s{seed}-{i}", f"g{seed}-{i}", {"image": image, "series": series, "table": table}))
    return samples


def _batches(n: int, seed: int, size: int = 16):
    layout = {m.name: m.layout for m in DOMAIN.modalities}
    samples = _samples(n, seed)
    return [collate_samples(samples[i : i + size], layout) for i in range(0, n, size)]


def _model(cfg):
    torch.manual_seed(0)
    model, transferred = build_pretrain_model(cfg, DOMAIN, build_fusion_model(cfg, DOMAIN), ["image", "series", "table"])
    return model, transferred


def test_total_is_the_weighted_sum_of_the_modality_losses():
    cfg = _cfg(loss_weights={"image": 0.5, "series": 2.0, "table": 1.5}, contrastive_weight=0.25)
    model, transferred = _model(cfg)
    assert transferred == ("encoders.image", "encoders.series", "encoders.table", "fusion")
    step = model(_batches(16, 0)[0])
    expected = 0.5 * step.losses["image"] + 2.0 * step.losses["series"] + 1.5 * step.losses["table"] + 0.25 * step.parts["loss/contrastive"]
    assert torch.allclose(step.total, expected)
    assert {k: float(v) for k, v in step.parts.items() if k.startswith("weight/")} == {"weight/image": 0.5, "weight/series": 2.0, "weight/table": 1.5, "weight/contrastive": 0.25}
    assert torch.allclose(step.parts["loss/total"], expected)


def test_trivial_normalisation_and_uncertainty_weighting():
    cfg = _cfg(loss_weights={"image": 2.0}, contrastive_weight=0.0, normalize_by_trivial=True, uncertainty_weighting=True)
    model, _ = _model(cfg)
    model.trivial.copy_(torch.tensor([4.0, 0.5, 2.0]))
    with torch.no_grad():
        model.log_vars.copy_(torch.tensor([0.3, -0.2, 0.0]))
    step = model(_batches(16, 0)[0])
    s = model.log_vars.detach()
    parts = [(2.0 / 4.0, step.losses["image"], s[0]), (1.0 / 0.5, step.losses["series"], s[1]), (1.0 / 2.0, step.losses["table"], s[2])]
    expected = sum(w * (torch.exp(-si) * loss + si) for w, loss, si in parts)
    assert torch.allclose(step.total, expected)
    assert math.isclose(float(step.parts["weight/image"]), 0.5 * math.exp(-0.3), rel_tol=1e-6)


def test_zero_weight_removes_that_modality_gradient():
    cfg = _cfg(loss_weights={"series": 0.0}, contrastive_weight=0.0)
    model, _ = _model(cfg)
    step = model(_batches(16, 0)[0])
    assert float(step.parts["loss/series"]) > 0 and float(step.parts["weight/series"]) == 0  # still computed and logged
    assert not step.losses["series"].requires_grad  # no graph at all behind the zero-weighted term
    params = [p for p in model.parameters() if p.requires_grad]
    total = torch.autograd.grad(step.total, params, retain_graph=True, allow_unused=True)
    others = torch.autograd.grad(step.losses["image"] + step.losses["table"], params, allow_unused=True)
    for a, b in zip(total, others):
        assert (a is None and b is None) or torch.allclose(a, b)
    decoder = {id(p) for p in model.objectives["series"].parameters()}
    assert all(g is None for p, g in zip(params, total) if id(p) in decoder)
    assert any(g is not None and g.any() for p, g in zip(params, total) if id(p) in {id(q) for q in model.objectives["image"].parameters()})


def test_unknown_modality_in_loss_weights_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"pretrain.loss_weights: \['audio'\] is not a modality of this toy run; its modalities are \['image', 'series', 'table'\]"):
        _model(_cfg(loss_weights={"audio": 1.0}))


@pytest.fixture
def one_thread():
    """Small steps run fastest on one thread; on a loaded machine, more threads only oversubscribe the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_held_out_reconstruction_beats_the_per_position_mean_predictor(one_thread):
    cfg = _cfg(contrastive_weight=0.0, whole_modality=0.0)
    model, _ = _model(cfg)
    pool, held_out = _batches(128, 1), _batches(48, 2)
    means = fit_statistics(model, pool[:4])
    before = evaluate(model, held_out, torch.device("cpu"), means)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for epoch in range(10):
        model.epoch = epoch
        for batch in pool:
            loss = model(batch).total
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    after = evaluate(model, held_out, torch.device("cpu"), means, hide_others=True)
    for m in ("image", "series", "table"):
        assert after[f"loss/{m}"] < 0.8 * after[f"trivial/{m}"], (m, after)
        assert after[f"loss/{m}"] < before[f"loss/{m}"]
    assert after["recon"] == pytest.approx(sum(after[f"loss/{m}"] for m in ("image", "series", "table")))
    assert after["loss/table/others_hidden"] > after["loss/table"]  # the columns are reconstructed from the other modalities too


def test_the_decoders_start_at_the_per_position_mean_predictor():
    """Each decoder predicts a residual over the pool's per-position mean target (its PositionPrior), its last layer at zero."""
    model, _ = _model(_cfg(contrastive_weight=0.0, whole_modality=0.0))
    pool, held_out = _batches(32, 1), _batches(16, 2)
    unfitted = evaluate(model, held_out, torch.device("cpu"))
    means = fit_statistics(model, pool)
    start = evaluate(model, held_out, torch.device("cpu"), means)
    for m in ("image", "series", "table"):
        assert start[f"loss/{m}"] == pytest.approx(start[f"trivial/{m}"], rel=1e-5), m
        assert unfitted[f"loss/{m}"] > start[f"loss/{m}"], m  # the prior matters: without it the decoder predicts 0
        prior = model.objectives[m].decoder.prior
        assert prior.mean.shape[0] > 0 and not prior.mean.requires_grad and "decoder.prior.mean" in dict(model.objectives[m].named_buffers())
    fresh, _ = _model(_cfg(contrastive_weight=0.0, whole_modality=0.0))
    fresh.load_state_dict(model.state_dict())  # a saved pretraining loads into a model never fitted (positions taken from the file)
    assert torch.equal(fresh.objectives["image"].decoder.prior.mean, model.objectives["image"].decoder.prior.mean)


def test_an_encoder_declares_its_own_objective_and_an_undeclared_one_is_named():
    from torch import nn

    from mmapps.models.types import EncoderOutput
    from mmapps.pretrain.sequence import TimeUnitObjective

    class DeclaringEncoder(nn.Module):
        """A plugin encoder: per-step linear tokens, masked like feature rows, declared on the encoder."""

        def __init__(self, dim: int) -> None:
            super().__init__()
            self.proj, self.out_dim = nn.Linear(3, dim), dim

        def forward(self, mb):
            tokens = self.proj(mb.data.float())
            mask = torch.ones(tokens.shape[:2], dtype=torch.bool) & mb.present.unsqueeze(1)
            return EncoderOutput(tokens, mask, tokens.mean(1))

        def pretrain_objective(self, spec, cfg, dim):
            return TimeUnitObjective("features", self, dim, ("image", "series", "table"), spec.name, 0.5, 1, 3, dim, 1, 2)

    cfg = _cfg(contrastive_weight=0.0)
    backbone = build_fusion_model(cfg, DOMAIN)
    backbone.encoders["series"] = DeclaringEncoder(32)
    model, _ = build_pretrain_model(cfg, DOMAIN, backbone, ["image", "series", "table"])
    assert model.objectives["series"].ratio == 0.5
    assert torch.isfinite(model(_batches(8, 0)[0]).losses["series"])
    backbone.encoders["series"] = nn.Identity()
    backbone.encoders["series"].out_dim = 32
    with pytest.raises(ConfigError, match=r"modality 'series' \(features\) uses encoder Identity, which has no core masking objective .* pretrain_objective"):
        build_pretrain_model(cfg, DOMAIN, backbone, ["image", "series", "table"])
