"""Every fusion the domain lists builds, runs per window, honours absent modalities and trains."""

import pytest
import torch

from mmapps.data import Sample, collate_samples
from mmapps.models.build import build_model
from mmapps.workflows.resolve import resolve_config
from mmapps_domains.surveillance import domain
from mmapps_domains.surveillance.dataset import absent_or
from mmapps_domains.surveillance.losses import mil_ranking, window_bce

LAYOUTS = {m.name: m.layout for m in domain.modalities if m.name != "features"}


def tiny_sample(i: int, windows: int, audio: bool) -> Sample:
    g = torch.Generator().manual_seed(i)
    inputs = {
        "video": torch.rand(windows, 4, 2, 32, 32, generator=g),
        "audio": absent_or(torch.randn(windows, 32, 16, generator=g).numpy() if audio else None, (32, 16)),
        "chat": torch.randn(windows, 385, generator=g),
    }
    events = (torch.rand(windows, 3, generator=g) > 0.7).float()
    meta = {"window_starts": [float(w) for w in range(windows)], "window_s": 1.0}
    return Sample(f"c{i}", f"c{i}", inputs, {"events": events, "clip": events.amax(0)}, meta)


@pytest.mark.parametrize("fusion", domain.fusions)
def test_fusions_per_window(fusion: str) -> None:
    cfg = resolve_config(domain, "smoke", overrides=[f"model.fusion.name={fusion}"] + (["model.fusion.options={}"] if fusion != "attention" else []))
    torch.manual_seed(0)
    model = build_model(cfg, domain)
    batch = collate_samples([tiny_sample(0, 5, False), tiny_sample(1, 3, False)], LAYOUTS)  # no audio in the batch
    assert not batch.inputs["audio"].present.any()
    logits = model(batch)["events"]
    assert logits.shape == (2, 5, 3) and torch.isfinite(logits).all()
    loss = window_bce(logits, batch.targets["events"], batch)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_absent_audio_changes_nothing_and_causality() -> None:
    cfg = resolve_config(domain, "smoke")
    torch.manual_seed(0)
    model = build_model(cfg, domain).eval()
    with_audio = tiny_sample(0, 6, True)
    without = Sample("c0", "c0", {**with_audio.inputs, "audio": absent_or(None, (32, 16))}, with_audio.targets, with_audio.meta)
    other = tiny_sample(1, 6, True)
    with torch.no_grad():
        a = model(collate_samples([without, other], LAYOUTS))["events"][0]
        changed = Sample("c0", "c0", {**without.inputs, "video": without.inputs["video"].clone()}, without.targets, without.meta)
        changed.inputs["video"][4:] = 0.0  # a change at window 4 must not move windows 0-3 (causal fusion)
        b = model(collate_samples([changed, other], LAYOUTS))["events"][0]
    torch.testing.assert_close(a[:4], b[:4])
    assert not torch.allclose(a[4:], b[4:])


def test_weak_regime_trains_with_mil() -> None:
    cfg = resolve_config(domain, "smoke")
    model = build_model(cfg, domain)
    samples = [tiny_sample(i, 4, True) for i in range(4)]
    for s in samples:
        s.targets["events"] = torch.full_like(s.targets["events"], float("nan"))
    batch = collate_samples(samples, LAYOUTS)
    batch.targets["clip"] = torch.tensor([[1.0, 0, 0], [0, 0, 0], [1, 1, 0], [0, 1, 0]])
    logits = model(batch)["events"]
    assert window_bce(logits, batch.targets["events"], batch).item() == 0.0
    loss = mil_ranking(logits, batch.targets["events"], batch)
    assert loss.item() > 0
    loss.backward()


@pytest.mark.parametrize("fusion", domain.fusions)
def test_window_scores_depend_on_the_right_windows(fusion: str) -> None:
    """A change in clip 1's window 3 moves only clip 1's window 3 (per-window fusions) or its windows >= 3 (causal attention)."""
    cfg = resolve_config(domain, "smoke", overrides=[f"model.fusion.name={fusion}"] + (["model.fusion.options={}"] if fusion != "attention" else []))
    torch.manual_seed(0)
    model = build_model(cfg, domain).eval()
    samples = [tiny_sample(0, 6, True), tiny_sample(1, 6, True)]
    changed = Sample("c1", "c1", {m: v.clone() for m, v in samples[1].inputs.items()}, samples[1].targets, samples[1].meta)
    changed.inputs["audio"][3] += torch.randn(32, 16)
    with torch.no_grad():
        before = model(collate_samples(samples, LAYOUTS))["events"]
        after = model(collate_samples([samples[0], changed], LAYOUTS))["events"]
    moved = (after - before).abs().amax(-1) > 1e-6  # (B, T)
    expected = torch.zeros(2, 6, dtype=torch.bool)
    if fusion == "attention":
        expected[1, 3:] = True
    else:
        expected[1, 3] = True
    assert torch.equal(moved, expected), moved
