"""Streaming (watch) equals whole-clip inference; alert tracking equals the offline segment rule."""

from pathlib import Path

import numpy as np
import pytest
import torch

from mmapps.data import IssueLog, collate_samples
from mmapps.models.build import build_model, selected_modalities
from mmapps.workflows.resolve import resolve_config
from mmapps_domains.surveillance import domain
from mmapps_domains.surveillance.annotations import read_manifest
from mmapps_domains.surveillance.dataset import build_datasets
from mmapps_domains.surveillance.demo import write_demo_data
from mmapps_domains.surveillance.predictions import clip_alerts
from mmapps_domains.surveillance.streaming import StreamingScorer
from mmapps_domains.surveillance.watch import AlertTracker, window_batches


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    root = write_demo_data(tmp_path_factory.mktemp("demo"), n=2, seed=3)
    cfg = resolve_config(domain, "smoke", overrides=[f"data.root={root}"])
    entries = {e.clip_id: e for e in read_manifest(root, ["fight", "fall", "intrusion"], IssueLog())}
    return root, build_datasets(cfg).train, entries


@pytest.mark.parametrize("fusion,temporal_kernel", [("attention", 0), ("attention-alibi", 0), ("concat", 0), ("attention", 3), ("concat", 4), ("late", 3)])
def test_streaming_scores_equal_whole_clip(demo: tuple, fusion: str, temporal_kernel: int) -> None:
    """Window-by-window scores equal whole-clip ones, the head's temporal convolution and ALiBi included."""
    root, dataset, entries = demo
    name = fusion.split("-")[0]
    overrides = [f"data.root={root}", f"model.fusion.name={name}", 'model.heads={"events": {"options": {"temporal_kernel": %d}}}' % temporal_kernel]
    if fusion == "attention-alibi":
        overrides.append("model.fusion.options.positions=alibi")
    cfg = resolve_config(domain, "smoke", overrides=overrides + (["model.fusion.options={}"] if name != "attention" else []))
    assert fusion != "attention-alibi" or cfg.model.fusion.options["positions"] == "alibi"
    torch.manual_seed(0)
    model = build_model(cfg, domain).eval()
    if temporal_kernel:  # a fresh head's convolution is small: make it matter
        head = model.core.heads["events"]
        for h in (head.values() if isinstance(head, torch.nn.ModuleDict) else [head]):
            torch.nn.init.normal_(h.temporal.weight, std=1.0)
    modalities = selected_modalities(cfg, domain)
    layouts = {m: domain.modality(m).layout for m in modalities}
    for i in range(len(dataset)):
        sample = dataset[i]
        entry = entries[sample.sample_id]
        with torch.no_grad():
            full = torch.sigmoid(model(collate_samples([sample], layouts))["events"][0]).numpy()  # (W, C)
        scorer = StreamingScorer(model)
        streamed = [torch.sigmoid(scorer.step(b)).numpy() for _, b in window_batches(entry.clip, cfg, domain, modalities, entry.audio, entry.chat, entry.start_time)]
        np.testing.assert_allclose(np.stack(streamed), full, atol=1e-5)
    assert len(dataset) == 2


def test_alert_tracker_matches_offline_segments() -> None:
    rng = np.random.default_rng(0)
    scores = rng.uniform(size=(40, 2))
    tracker = AlertTracker(["a", "b"], 0.5, threshold=0.6, merge_gap=1)
    online = [a for w in range(40) for a in tracker.update(w, scores[w])] + tracker.finish()
    offline = clip_alerts("x", scores, ["a", "b"], 0.5, 0.6, 1)
    key = lambda a: (a["class"], a["start"])  # noqa: E731
    assert sorted(online, key=key) == sorted(offline, key=key)
    assert offline  # the case is not empty


def test_watch_uses_the_run_threshold(tmp_path: Path) -> None:
    import json

    from mmapps_domains.surveillance.watch import default_threshold

    ckpt = tmp_path / "run" / "checkpoints" / "best.safetensors"
    ckpt.parent.mkdir(parents=True)
    assert default_threshold(ckpt, 0.5) == 0.5
    (tmp_path / "run" / "metrics.json").write_text(json.dumps({"alarm/threshold": 0.27}))
    assert default_threshold(ckpt, 0.5) == 0.27
