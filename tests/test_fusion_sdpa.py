"""Attention fusion on scaled_dot_product_attention: same outputs and gradients as the nn.TransformerEncoder
version it replaced (same weights), fused kernel in training, attention dropout only where asked."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmapps.models.fusions.attention import (
    AttentionFusion,
    alibi_bias,
    sinusoidal_positions,
)
from mmapps.models.types import EncoderOutput

D, H = 16, 4
DIMS = {"audio": 8, "chat": 12, "video": 6}


class ReferenceAttentionFusion(nn.Module):
    """The previous implementation (PyTorch's nn.TransformerEncoder, masks as it took them), kept as the oracle."""

    def __init__(self, dims: dict[str, int], per_timestep: bool, causal: bool, lookahead: int, positions: str) -> None:
        super().__init__()
        self.modalities = sorted(dims)
        self.proj = nn.ModuleDict({m: nn.Linear(dims[m], D) for m in self.modalities})
        self.modality_embedding = nn.Parameter(torch.randn(len(self.modalities), D) * 0.02)
        self.summary_token = nn.Parameter(torch.randn(1, 1, D) * 0.02)
        layer = nn.TransformerEncoderLayer(D, H, dim_feedforward=2 * D, dropout=0.0, batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(D)
        self.per_timestep, self.causal, self.lookahead, self.positions = per_timestep, causal, lookahead, positions
        self.register_buffer("slopes", torch.tensor([2.0 ** (-8.0 * h / H) for h in range(1, H + 1)]), persistent=False)

    def forward(self, features, present):
        if not self.per_timestep:
            tokens = [self.proj[m](features[m].tokens) + self.modality_embedding[i] for i, m in enumerate(self.modalities)]
            masks = [features[m].token_mask & present[m].unsqueeze(1) for m in self.modalities]
            B = tokens[0].shape[0]
            x = torch.cat([self.summary_token.expand(B, -1, -1)] + tokens, dim=1)
            keep = torch.cat([torch.ones(B, 1, dtype=torch.bool)] + masks, dim=1)
            out = self.norm(self.transformer(x, src_key_padding_mask=~keep))
            return out[:, 0], out[:, 1:]
        M = len(self.modalities)
        grid = torch.stack([self.proj[m](features[m].tokens) + self.modality_embedding[i] for i, m in enumerate(self.modalities)], dim=2)
        keep = torch.stack([features[m].token_mask & present[m].unsqueeze(1) for m in self.modalities], dim=2)
        B, T = grid.shape[:2]
        if self.positions == "absolute":
            grid = grid + sinusoidal_positions(T, D, grid.device).view(1, T, 1, D)
        x = torch.cat([self.summary_token.expand(B, -1, -1), grid.reshape(B, T * M, D)], dim=1)
        key_keep = torch.cat([torch.ones(B, 1, dtype=torch.bool), keep.reshape(B, T * M)], dim=1)
        time = torch.cat([torch.full((1,), -1), torch.arange(T).repeat_interleave(M)])
        attn_mask = None
        if self.causal:
            attn_mask = time.unsqueeze(0) > (time.unsqueeze(1) + self.lookahead)
            attn_mask[:, 0] = False
        padding = ~key_keep
        if self.positions == "alibi":
            bias = alibi_bias(time, time, self.slopes)
            if attn_mask is not None:
                bias = bias.masked_fill(attn_mask, float("-inf"))
            bias = bias.unsqueeze(0).masked_fill(~key_keep.view(B, 1, 1, -1), float("-inf"))
            attn_mask, padding = bias.flatten(0, 1), None
        fastpath = torch.backends.mha.get_fastpath_enabled()
        torch.backends.mha.set_fastpath_enabled(fastpath and self.positions != "alibi")
        try:
            out = self.norm(self.transformer(x, mask=attn_mask, src_key_padding_mask=padding))
        finally:
            torch.backends.mha.set_fastpath_enabled(fastpath)
        per_step = out[:, 1:].reshape(B, T, M, D)
        weights = keep.float().unsqueeze(-1)
        fused = (per_step * weights).sum(2) / weights.sum(2).clamp_min(1.0)
        return fused, fused


MODES = [  # (per_timestep, causal, lookahead, positions)
    (False, False, 0, "absolute"),
    (True, False, 0, "absolute"),
    (True, True, 0, "absolute"),
    (True, True, 1, "absolute"),
    (True, False, 0, "alibi"),
    (True, True, 0, "alibi"),
    (True, True, 2, "alibi"),
]


def _inputs(per_timestep: bool, seed: int = 0) -> tuple[dict[str, EncoderOutput], dict[str, torch.Tensor]]:
    """Batch 3 with padded tokens, one sample missing chat and one missing video (masks must matter)."""
    g = torch.Generator().manual_seed(seed)
    lengths = {"audio": 5, "chat": 5, "video": 5} if per_timestep else {"audio": 3, "chat": 6, "video": 2}
    features, present = {}, {}
    for m, t in lengths.items():
        tokens = torch.randn(3, t, DIMS[m], generator=g)
        mask = torch.rand(3, t, generator=g) > 0.3
        features[m] = EncoderOutput(tokens, mask, tokens.mean(1))
        present[m] = torch.ones(3, dtype=torch.bool)
    present["chat"][1] = False
    present["video"][2] = False
    return features, present


def _pair(mode: tuple) -> tuple[ReferenceAttentionFusion, AttentionFusion]:
    per_timestep, causal, lookahead, positions = mode
    torch.manual_seed(1)
    reference = ReferenceAttentionFusion(DIMS, per_timestep, causal, lookahead, positions)
    for p in reference.parameters():  # away from the initialisation (zero biases, equal layers)
        p.data.add_(torch.randn_like(p) * 0.1)
    fusion = AttentionFusion(DIMS, dim=D, heads=H, dropout=0.0, per_timestep=per_timestep, causal=causal, lookahead=lookahead, positions=positions)
    fusion.load_state_dict(reference.state_dict())  # strict: the parameter names are the same
    return reference, fusion


@pytest.mark.parametrize("mode", MODES, ids=lambda m: f"timestep={m[0]}-causal={m[1]}-lookahead={m[2]}-{m[3]}")
def test_outputs_and_gradients_equal_the_nn_transformer_version(mode):
    reference, fusion = _pair(mode)
    features, present = _inputs(mode[0])
    ref_pooled, ref_tokens = reference(features, present)
    out = fusion(features, present)
    torch.testing.assert_close(out.pooled, ref_pooled, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.tokens, ref_tokens, atol=1e-5, rtol=0)
    weights = torch.randn_like(ref_pooled)
    (ref_pooled * weights).sum().backward()
    (out.pooled * weights).sum().backward()
    ref_grads = dict(reference.named_parameters())
    for name, p in fusion.named_parameters():
        torch.testing.assert_close(p.grad, ref_grads[name].grad, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("mode", MODES, ids=lambda m: f"timestep={m[0]}-causal={m[1]}-lookahead={m[2]}-{m[3]}")
def test_inference_equals_the_nn_transformer_version_under_no_grad(mode):
    reference, fusion = _pair(mode)
    reference.eval(), fusion.eval()
    features, present = _inputs(mode[0], seed=3)
    with torch.no_grad():  # the reference takes PyTorch's inference fast path where it can
        ref_pooled, _ = reference(features, present)
        out = fusion(features, present)
    torch.testing.assert_close(out.pooled, ref_pooled, atol=1e-5, rtol=0)


def test_old_checkpoints_load_both_ways():
    reference, fusion = _pair(MODES[0])
    reference.load_state_dict(fusion.state_dict())  # strict both ways
    assert set(reference.state_dict()) == set(fusion.state_dict())


@pytest.mark.parametrize("mode", MODES, ids=lambda m: f"timestep={m[0]}-causal={m[1]}-lookahead={m[2]}-{m[3]}")
def test_training_step_runs_the_fused_cpu_kernel(mode):
    _, fusion = _pair(mode)
    fusion.train()  # residual dropout stays on; attention dropout is off by default
    fusion.transformer.layers[0].dropout1.p = 0.1
    features, present = _inputs(mode[0])
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fusion(features, present).pooled.sum().backward()
    names = {e.key for e in prof.key_averages()}
    assert "aten::_scaled_dot_product_flash_attention_for_cpu" in names
    assert "aten::_scaled_dot_product_flash_attention_for_cpu_backward" in names
    assert "aten::_scaled_dot_product_attention_math" not in names


def test_attention_dropout_applies_in_training_only():
    torch.manual_seed(0)
    fusion = AttentionFusion(DIMS, dim=D, heads=H, dropout=0.0, attention_dropout=0.5)
    features, present = _inputs(False)
    fusion.train()
    assert not torch.allclose(fusion(features, present).pooled, fusion(features, present).pooled)
    fusion.eval()
    with torch.no_grad():
        torch.testing.assert_close(fusion(features, present).pooled, fusion(features, present).pooled, atol=0, rtol=0)


def test_masked_keys_contribute_nothing():
    torch.manual_seed(0)
    fusion = AttentionFusion(DIMS, dim=D, heads=H, dropout=0.0).eval()
    features, present = _inputs(False)
    before = fusion(features, present).pooled
    changed = dict(features)
    chat = features["chat"]
    changed["chat"] = EncoderOutput(chat.tokens.masked_fill(~chat.token_mask.unsqueeze(-1), 1e3), chat.token_mask, chat.pooled)
    torch.testing.assert_close(fusion(changed, present).pooled, before, atol=1e-6, rtol=0)


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_packed_random_dropout_keeps_one_minus_p_scaled_and_masks_the_gradient(p):
    from mmapps.models.fusions.sdpa_layer import PackedRandomDropout

    torch.manual_seed(0)
    dropout = PackedRandomDropout(p).train()
    x = torch.ones(400, 1001, requires_grad=True)  # odd size: the last word is partly used
    y = dropout(x)
    kept = y.detach() > 0
    n = kept.numel()
    assert abs(kept.float().mean().item() - (1 - p)) < 4 * (p * (1 - p) / n) ** 0.5
    for lane in range(4):  # each 16-bit slice of the random words is its own uniform
        assert abs(kept.flatten()[lane::4].float().mean().item() - (1 - p)) < 4 * (p * (1 - p) / (n / 4)) ** 0.5
    torch.testing.assert_close(y.detach()[kept], torch.full((int(kept.sum()),), 1 / (1 - p)))
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.float() / (1 - p))
    dropout.eval()
    assert dropout(x) is x
    with pytest.raises(ValueError, match="probability"):
        PackedRandomDropout(1.5)
