"""Fine-tuning modes (mmapps.finetune) on a tiny core FusionModel: what trains, what stays bit-unchanged, merged == unmerged, adapter files, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmapps.config import FinetuneConfig, validate_config
from mmapps.data.sample import Batch, ModalityBatch
from mmapps.errors import CheckpointError, ConfigError
from mmapps.finetune import (
    adapter_state_dict,
    apply_finetune,
    format_summary,
    has_adapters,
    load_adapters,
    merged_copy,
    parameter_summary,
    save_adapters,
)
from mmapps.models.build import register_core_parts
from mmapps.models.fusion_model import FusionModel
from mmapps.registry import ENCODERS, FUSIONS, HEADS

D = 16


def tiny_model(seed: int = 0, modality_dropout: float = 0.0) -> FusionModel:
    register_core_parts()
    torch.manual_seed(seed)
    encoders = nn.ModuleDict({
        "image": ENCODERS.get("image_cnn")(dim=D, backbone="small_cnn", in_channels=1, width=4),
        "table": ENCODERS.get("tabular_mlp")(dim=D, in_features=5, hidden=8),
    })
    fusion = FUSIONS.get("attention")(modality_to_dim={"image": D, "table": D}, dim=D, layers=2, heads=2, dropout=0.0)
    heads = nn.ModuleDict({"y": HEADS.get("multilabel")(in_dim=D, num_labels=3)})
    return FusionModel(encoders, fusion, heads, modality_dropout=modality_dropout)


def tiny_batch(seed: int = 0, B: int = 4) -> Batch:
    g = torch.Generator().manual_seed(seed)
    present = torch.ones(B, dtype=torch.bool)
    inputs = {
        "image": ModalityBatch(torch.randn(B, 1, 16, 16, generator=g), present),
        "table": ModalityBatch(torch.randn(B, 5, generator=g), present),
    }
    targets = {"y": (torch.rand(B, 3, generator=g) > 0.5).float()}
    return Batch(inputs, targets, [f"s{i}" for i in range(B)], [f"g{i}" for i in range(B)], [{} for _ in range(B)])


def train_steps(model: nn.Module, steps: int = 3, lr: float = 1e-2) -> None:
    """A few AdamW steps on BCE over the trainable parameters only (as the trainer builds its optimiser)."""
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for step in range(steps):
        batch = tiny_batch(step)
        loss = nn.functional.binary_cross_entropy_with_logits(model(batch)["y"], batch.targets["y"])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def lora(**parts: dict) -> FinetuneConfig:
    return FinetuneConfig.model_validate({"parts": parts})


def test_lora_trains_only_adapters_and_heads_and_frozen_weights_stay_bit_equal():
    model = tiny_model()
    plan = apply_finetune(model, lora(fusion={"mode": "lora", "rank": 2}, image={"mode": "lora", "rank": 2}, table={"mode": "frozen"}))
    assert plan.uses_adapters and "transformer.layers.0.self_attn.q_proj" in plan.adapted["fusion"]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(("lora_" in n) or n.startswith("heads.") for n in trainable), trainable
    assert any(n.startswith("heads.") for n in trainable) and any("fusion" in n and "lora_B" in n for n in trainable)
    before = weights(model)
    # gradients reach the adapters and the head, and no frozen parameter gets one
    batch = tiny_batch()
    model.train()
    nn.functional.binary_cross_entropy_with_logits(model(batch)["y"], batch.targets["y"]).backward()
    for name, p in model.named_parameters():
        if p.requires_grad and "lora_A" not in name:  # lora_B starts at zero, so lora_A gets no gradient at step 1
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        if not p.requires_grad:
            assert p.grad is None, name
    model.zero_grad()
    train_steps(model, steps=3)
    after = weights(model)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    frozen = {k for k in before if "lora_" not in k and not k.startswith("heads.")}
    assert not (changed & frozen), sorted(changed & frozen)[:5]  # base weights and BatchNorm statistics bit-unchanged
    assert any("lora_" in k for k in changed) and any(k.startswith("heads.") for k in changed)


def test_frozen_part_keeps_batchnorm_statistics_and_runs_in_eval_mode():
    model = tiny_model()
    apply_finetune(model, lora(image={"mode": "frozen"}))
    before = {k: v for k, v in weights(model).items() if k.startswith("encoders.image.")}
    assert any("running_mean" in k for k in before)
    train_steps(model, steps=3)
    assert not model.encoders["image"].training and model.training
    for k, v in before.items():
        assert torch.equal(model.state_dict()[k], v), k
    assert all(not p.requires_grad for p in model.encoders["image"].parameters())
    assert any(not torch.equal(v, weights(tiny_model())[k]) for k, v in weights(model).items() if k.startswith("encoders.table."))  # the rest trains


def test_last_n_trains_the_last_layers_and_the_modules_after_them():
    model = tiny_model()
    apply_finetune(model, lora(image={"mode": "last_n", "last_n": 1}, fusion={"mode": "last_n", "last_n": 1}))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad and not n.startswith(("heads.", "encoders.table."))}
    assert trainable == {
        "encoders.image.trunk.6.weight", "encoders.image.trunk.7.weight", "encoders.image.trunk.7.bias",
        "encoders.image.proj.weight", "encoders.image.proj.bias", "fusion.norm.weight", "fusion.norm.bias",
        *{n for n, _ in model.named_parameters() if n.startswith("fusion.transformer.layers.1.")},
    }
    before = weights(model)
    train_steps(model, steps=2)
    assert torch.equal(model.state_dict()["encoders.image.trunk.1.running_mean"], before["encoders.image.trunk.1.running_mean"])
    assert not torch.equal(model.state_dict()["encoders.image.trunk.7.running_mean"], before["encoders.image.trunk.7.running_mean"])


@pytest.mark.parametrize("mode", ["lora", "ia3"])
def test_merged_equals_unmerged_in_eval_mode(mode):
    model = tiny_model()
    apply_finetune(model, lora(fusion={"mode": mode, "rank": 4}, image={"mode": mode}, table={"mode": mode}))
    train_steps(model, steps=3, lr=5e-2)  # non-zero adapters
    merged = merged_copy(model)
    assert not has_adapters(merged) and has_adapters(model)
    assert set(merged.state_dict()) == set(tiny_model().state_dict())  # a normal checkpoint's layout (packed in_proj)
    model.eval(), merged.eval()
    batch = tiny_batch(7)
    with torch.no_grad():
        unmerged_out, merged_out = model(batch)["y"], merged(batch)["y"]
        plain = tiny_model()
        plain.load_state_dict(merged.state_dict())
        plain.eval()
        assert torch.allclose(unmerged_out, merged_out, atol=1e-5), (unmerged_out - merged_out).abs().max()
        assert torch.allclose(plain(batch)["y"], merged_out, atol=1e-6)
        assert not torch.allclose(plain(batch)["y"], tiny_model().eval()(batch)["y"], atol=1e-4)  # the adapters did change the model


def test_split_projections_keep_outputs_and_load_packed_checkpoints():
    model = tiny_model().eval()
    batch = tiny_batch(3)
    packed_state = model.state_dict()
    with torch.no_grad():
        reference = model(batch)["y"]
        for layer in model.fusion.transformer.layers:
            layer.self_attn.split_projections()
        assert "fusion.transformer.layers.0.self_attn.q_proj.weight" in model.state_dict()
        assert torch.allclose(model(batch)["y"], reference, atol=1e-6)
        other = tiny_model(seed=1).eval()
        for layer in other.fusion.transformer.layers:
            layer.self_attn.split_projections()
        other.load_state_dict(packed_state)  # an existing (packed) checkpoint loads into split projections
        assert torch.allclose(other(batch)["y"], reference, atol=1e-6)
        repacked = tiny_model(seed=2).eval()
        repacked.load_state_dict(model.state_dict())  # and the reverse
        assert torch.allclose(repacked(batch)["y"], reference, atol=1e-6)


def test_fast_path_is_off_around_pytorch_attention_with_adapters():
    """nn.TransformerEncoderLayer's eval fast path reads raw weights: with adapters it must not run."""
    torch.manual_seed(0)
    part = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True), 2, enable_nested_tensor=False)
    holder = nn.ModuleDict({"enc": part})
    from mmapps.config import PartFinetuneConfig
    from mmapps.finetune.adapters import inject_adapters

    with pytest.raises(ConfigError, match="sit inside nn.MultiheadAttention"):
        inject_adapters("enc", part, PartFinetuneConfig(mode="lora", rank=2, target_modules=["linear1", "out_proj"]))
    from mmapps.finetune.adapters import default_targets

    assert default_targets(part) == ["layers.0.self_attn", "layers.1.self_attn"]
    inject_adapters("enc", part, PartFinetuneConfig(mode="lora", rank=2, target_modules=["self_attn", "linear1", "linear2"]))
    for name, p in part.named_parameters():
        if "lora_B" in name:
            nn.init.normal_(p, std=0.5)
    x = torch.randn(2, 5, 8)
    part.eval()
    with torch.no_grad():
        unmerged = part(x)
        merged = merged_copy(holder)["enc"].eval()(x)
    assert torch.allclose(unmerged, merged, atol=1e-5), (unmerged - merged).abs().max()


def test_adapters_only_file_round_trip(tmp_path):
    cfg = lora(fusion={"mode": "lora", "rank": 2}, image={"mode": "lora", "rank": 2}, table={"mode": "frozen"})
    base = tiny_model(seed=5)
    base_state = weights(base)
    model = tiny_model(seed=5)
    apply_finetune(model, cfg)
    train_steps(model, steps=3, lr=5e-2)
    path = tmp_path / "best.adapters.safetensors"
    save_adapters(path, model, "domain: tiny\n")
    stored = adapter_state_dict(model)
    assert stored and all(("lora_" in k) or k.startswith("heads.") for k in stored)
    assert path.stat().st_size < 0.5 * sum(v.numel() * 4 for v in base_state.values())
    fresh = tiny_model(seed=9)
    fresh.load_state_dict(base_state)  # the base it started from
    apply_finetune(fresh, cfg)
    loaded = load_adapters(fresh, path)
    assert set(loaded) == set(stored)
    batch = tiny_batch(11)
    model.eval(), fresh.eval()
    with torch.no_grad():
        assert torch.equal(model(batch)["y"], fresh(batch)["y"])
    with pytest.raises(CheckpointError, match="do not match this model"):
        load_adapters(tiny_model(), path)  # not adapted: the adapter keys are unknown


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ({"imag": {"mode": "lora"}}, r"\['imag'\] not parts of this model.*its parts are image, table, fusion"),
        ({"heads": {"mode": "frozen"}}, "heads are always trained"),
        ({"image": {"mode": "last_n", "last_n": 9}}, r"finetune.parts.image.last_n=9: part 'image' has 3 layer"),
        ({"fusion": {"mode": "lora", "target_modules": ["qkv"]}}, r"target_modules: \['qkv'\] match no Linear/Conv/attention module.*q_proj"),
    ],
)
def test_bad_options_give_a_clear_error(parts, message):
    with pytest.raises(ConfigError, match=message):
        apply_finetune(tiny_model(), lora(**parts))


def test_bad_mode_name_is_refused_by_the_config():
    with pytest.raises(ConfigError, match=r"finetune.parts.fusion.mode.*'lora' or 'ia3' \(found 'loRA-8'\)"):
        validate_config({"domain": "x", "finetune": {"parts": {"fusion": {"mode": "loRA-8"}}}})
    with pytest.raises(ConfigError, match=r"finetune.parts.fusion.rnk: Extra inputs"):
        validate_config({"domain": "x", "finetune": {"parts": {"fusion": {"mode": "lora", "rnk": 4}}}})


def test_parameter_summary_counts_trainable_and_total():
    model = tiny_model()
    apply_finetune(model, lora(fusion={"mode": "lora", "rank": 2}, image={"mode": "frozen"}, table={"mode": "frozen"}))
    rows = parameter_summary(model)
    assert rows["model"].total == sum(p.numel() for p in model.parameters())
    assert rows["model"].trainable == rows["fusion"].trainable + rows["heads"].trainable
    assert rows["image"].trainable == 0 and rows["heads"].trainable == rows["heads"].total
    assert rows["fusion"].trainable == 2 * 4 * (2 * D + D * 2)  # 2 layers x 4 projections x (A: 2 x D + B: D x 2)
    assert "trainable" in format_summary(rows)
