"""Surveillance pretraining: hidden windows never reach visible tokens, the decoder is causal, chat counts only with messages."""

import pytest
import torch

from mmapps.data import Sample, collate_samples
from mmapps.models.build import build_model
from mmapps.pretrain.build import build_pretrain_model
from mmapps.pretrain.contract import MaskKeys
from mmapps.pretrain.masking import hidden_count
from mmapps.workflows.resolve import resolve_config
from mmapps_domains.surveillance import domain
from mmapps_domains.surveillance.dataset import absent_or

LAYOUTS = {m.name: m.layout for m in domain.modalities if m.name != "features"}
MODALITIES = ["audio", "chat", "video"]


def clip(i: int, windows: int, audio: bool = True, quiet_chat: tuple[int, ...] = ()) -> Sample:
    g = torch.Generator().manual_seed(i)
    chat = torch.randn(windows, 385, generator=g)
    chat[:, -1] = torch.rand(windows, generator=g) + 0.1  # log(1 + messages) > 0: messages in the window
    chat[list(quiet_chat)] = 0.0  # windows without messages are all zeros (as text_embed writes them)
    inputs = {
        "video": torch.rand(windows, 4, 2, 32, 32, generator=g),
        "audio": absent_or(torch.randn(windows, 32, 16, generator=g).numpy() if audio else None, (32, 16)),
        "chat": chat,
    }
    return Sample(f"c{i}", f"c{i}", inputs, {}, {"window_starts": [float(w) for w in range(windows)], "window_s": 1.0})


def pretrain_model(overrides: tuple[str, ...] = ()):
    cfg = resolve_config(domain, "smoke", overrides=["pretrain.whole_modality=0.0", "pretrain.contrastive_weight=0.0", *overrides])
    torch.manual_seed(0)
    return build_pretrain_model(cfg, domain, build_model(cfg, domain), MODALITIES)[0]


def masks_and_tokens(pm, batch, keys):
    inputs = {m: batch.inputs[m] for m in pm.modalities if batch.inputs[m].data is not None}
    masks = {m: pm.objectives[m].draw(inputs[m], keys, pm.modalities.index(m)) for m in inputs}
    return masks, {m: pm.objectives[m].encode(pm._encoders[m], inputs[m], masks[m]).output for m in inputs}


def test_window_masks_reproducible_and_honour_ratio():
    pm = pretrain_model(("pretrain.mask_ratio.video=0.5",))
    batch = collate_samples([clip(0, 8), clip(1, 5)], LAYOUTS)
    a, _ = masks_and_tokens(pm, batch, MaskKeys(0, 2, ("c0", "c1")))
    b, _ = masks_and_tokens(pm, batch, MaskKeys(0, 2, ("c0", "c1")))
    c, _ = masks_and_tokens(pm, batch, MaskKeys(0, 3, ("c0", "c1")))
    for m in MODALITIES:
        assert torch.equal(a[m].hidden, b[m].hidden)
    assert any(not torch.equal(a[m].hidden, c[m].hidden) for m in MODALITIES)
    assert a["video"].hidden.sum(1).tolist() == [hidden_count(8, 0.5), hidden_count(5, 0.5)]
    assert a["audio"].hidden.sum(1).tolist() == [hidden_count(8, 0.6), hidden_count(5, 0.6)]
    assert not (a["video"].hidden & ~a["video"].real).any()  # padding is never "hidden"


def test_hidden_windows_do_not_reach_visible_tokens():
    pm = pretrain_model().train()  # batch-norm statistics in training mode too
    samples = [clip(0, 6), clip(1, 4)]
    keys = MaskKeys(0, 0, ("c0", "c1"))
    masks, tokens = masks_and_tokens(pm, collate_samples(samples, LAYOUTS), keys)
    changed = []
    for s, sample in enumerate(samples):
        inputs = {m: v.clone() for m, v in sample.inputs.items()}
        for m in MODALITIES:
            n = inputs[m].shape[0]
            hidden = masks[m].hidden[s, :n]
            inputs[m][hidden] = torch.randn_like(inputs[m][hidden]) * 3
        changed.append(Sample(sample.sample_id, sample.group_id, inputs, {}, sample.meta))
    masks2, tokens2 = masks_and_tokens(pm, collate_samples(changed, LAYOUTS), keys)
    for m in MODALITIES:
        visible = masks[m].visible
        assert torch.equal(masks2[m].hidden, masks[m].hidden) and visible.any() and (~visible & masks[m].real).any()
        torch.testing.assert_close(tokens2[m].tokens[visible], tokens[m].tokens[visible])
        assert not tokens[m].token_mask[~visible].any()  # hidden windows' tokens are masked out of the fusion


@pytest.mark.parametrize("lookahead,next_window", [(0, False), (1, False), (0, True)])
def test_reconstruction_of_window_t_ignores_windows_after_t_plus_lookahead(lookahead, next_window):
    pm = pretrain_model((f"pretrain.options.lookahead={lookahead}", f"pretrain.options.next_window={str(next_window).lower()}")).eval()
    t = 2
    base = [clip(0, 7), clip(1, 7)]
    later = []
    for sample in base:
        inputs = {m: v.clone() for m, v in sample.inputs.items()}
        for m in MODALITIES:
            inputs[m][t + lookahead + 1:] = torch.randn_like(inputs[m][t + lookahead + 1:]) * 3 + 1
        later.append(Sample(sample.sample_id, sample.group_id, inputs, {}, sample.meta))
    with torch.no_grad():
        a, b = pm(collate_samples(base, LAYOUTS)), pm(collate_samples(later, LAYOUTS))
    for m in MODALITIES:
        assert torch.equal(a.masks[m].hidden, b.masks[m].hidden)
        torch.testing.assert_close(a.predictions[m][:, : t + 1], b.predictions[m][:, : t + 1])
        assert not torch.allclose(a.predictions[m][:, t + lookahead + 1:], b.predictions[m][:, t + lookahead + 1:])  # the test can fail


def test_next_window_forecast_does_not_see_its_window():
    pm = pretrain_model(("pretrain.options.next_window=true",)).eval()
    objective = pm.objectives["video"]
    P, shift, t = objective.target_dim, objective.shift, 4
    base = [clip(0, 7)]
    inputs = {m: v.clone() for m, v in base[0].inputs.items()}
    for m in MODALITIES:
        inputs[m][t:] = torch.randn_like(inputs[m][t:]) * 3
    with torch.no_grad():
        a = pm(collate_samples(base, LAYOUTS)).predictions["video"]
        b = pm(collate_samples([Sample("c0", "c0", inputs, {}, base[0].meta)], LAYOUTS)).predictions["video"]
    torch.testing.assert_close(a[:, t - shift, P:], b[:, t - shift, P:])  # the forecast of window t, made before t


def test_chat_loss_counts_only_windows_with_messages():
    pm = pretrain_model(("pretrain.mask_ratio.chat=0.9",))
    batch = collate_samples([clip(0, 6, quiet_chat=(0, 1, 2, 3)), clip(1, 6)], LAYOUTS)
    step = pm(batch)
    mask, weight = step.masks["chat"], step.targets["chat"].weight
    assert weight[0, :4].sum() == 0 and mask.hidden[0, :4].any()
    assert torch.equal(weight[1] > 0, mask.hidden[1])
    # the loss does not move when the prediction changes at a quiet window, and does at a counted one
    objective = pm.objectives["chat"]
    prediction = step.predictions["chat"].detach().clone()
    base = objective.loss(prediction, step.targets["chat"])
    quiet = int(mask.hidden[0, :4].nonzero()[0])
    prediction[0, quiet] += 5.0
    assert objective.loss(prediction, step.targets["chat"]) == base
    prediction[1, int(mask.hidden[1].nonzero()[0])] += 5.0
    assert objective.loss(prediction, step.targets["chat"]) > base


def test_documented_command_resolves_and_bad_options_are_refused():
    import re
    import shlex
    from pathlib import Path

    from mmapps.errors import ConfigError
    from mmapps.pretrain.recipes import resolve_pretrain_config

    text = (Path(__file__).resolve().parents[3] / "docs" / "pretraining.md").read_text()
    section = text.split("\n## Surveillance\n")[1].split("\n## ")[0]
    line = next(x for x in re.findall(r"```bash\n(.*?)```", section, flags=re.S)[0].splitlines() if x.startswith("mmapps surveillance pretrain"))
    argv = shlex.split(line)
    cfg = resolve_pretrain_config(domain, argv[argv.index("--recipe") + 1], None, [argv[i + 1] for i, a in enumerate(argv) if a == "--set"])
    pm = build_pretrain_model(cfg, domain, build_model(cfg, domain), MODALITIES)[0]
    assert pm.objectives["video"].ratio == 0.75 and pm.objectives["video"].decoder.next_out is not None
    cfg = resolve_pretrain_config(domain, "smoke", None, ["pretrain.options.look_ahead=1"])
    with pytest.raises(ConfigError, match=r"pretrain\.options.*look_ahead"):
        build_pretrain_model(cfg, domain, build_model(cfg, domain), MODALITIES)


def test_other_fusions_pretrain_through_a_causal_window_fusion_and_transfer_the_encoders():
    from mmapps.models.fusions.attention import AttentionFusion

    cfg = resolve_config(domain, "smoke", overrides=["model.fusion.name=concat", "model.fusion.options={}", "pretrain.contrastive_weight=0.0"])
    pm, transferred = build_pretrain_model(cfg, domain, build_model(cfg, domain), MODALITIES)
    assert transferred == ("core.encoders",)
    fusion = pm._fusion[0]
    assert isinstance(fusion, AttentionFusion) and fusion.causal and fusion.per_timestep
    assert any(p is q for p in pm.parameters() for q in fusion.parameters())  # trained with the decoders
    step = pm(collate_samples([clip(0, 5), clip(1, 4)], LAYOUTS))
    step.total.backward()
    assert all(p.grad is not None for p in fusion.parameters())
    cfg = resolve_config(domain, "smoke", overrides=["model.fusion.options.causal=false", "pretrain.options.next_window=true"])
    from mmapps.errors import ConfigError

    with pytest.raises(ConfigError, match="next_window=true needs a causal fusion"):
        build_pretrain_model(cfg, domain, build_model(cfg, domain), MODALITIES)
