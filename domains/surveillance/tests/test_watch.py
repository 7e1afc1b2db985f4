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


def test_watch_refuses_or_flags_an_unusable_chat_log(tmp_path: Path) -> None:
    """A chat log without one usable line never leaves ``watch`` at exit 0 silently without chat."""
    import json

    from typer.testing import CliRunner

    from mmapps.cli.verbs import build_domain_app
    from mmapps.config import config_to_yaml
    from mmapps.plugins import discover_domains
    from mmapps.train.checkpoint import save_inference_checkpoint
    from mmapps_domains.surveillance.encode import write_clip

    cfg = resolve_config(domain, "smoke")
    ckpt = tmp_path / "run" / "checkpoints" / "best.safetensors"
    ckpt.parent.mkdir(parents=True)
    save_inference_checkpoint(ckpt, build_model(cfg, domain), config_to_yaml(cfg), {"events": list(cfg.data.options.get("classes") or ["fight", "fall", "intrusion"])})
    clip = write_clip(tmp_path / "clip.mp4", np.zeros((16, 32, 32, 3), np.uint8), 8, None)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n" + json.dumps({"t": "NaN", "text": "x"}) + "\n")
    half = tmp_path / "half.jsonl"
    half.write_text("{not json\n" + json.dumps({"t": 0.5, "user": "op", "text": "all quiet"}) + "\n")
    app, runner = build_domain_app(next(e for e in discover_domains() if e.name == "surveillance")), CliRunner()
    base = ["watch", str(clip), "--checkpoint", str(ckpt), "--threshold", "0.5"]

    stopped = runner.invoke(app, base + ["--chat", str(bad), "--on-error", "stop", "--out", str(tmp_path / "a1.jsonl")])
    assert stopped.exit_code == 3 and "bad.jsonl:1: chat line: not valid JSON" in stopped.output
    assert not (tmp_path / "a1.jsonl").exists()  # refused before anything was written

    skipped = runner.invoke(app, base + ["--chat", str(bad), "--out", str(tmp_path / "a2.jsonl")])
    assert skipped.exit_code == 3, skipped.output
    assert "warning: chat log" in skipped.output and "watching without chat" in skipped.output and "watch ran without" in skipped.output
    assert (tmp_path / "a2.jsonl").exists() and "alert(s) over 2 windows" in skipped.output

    partial = runner.invoke(app, base + ["--chat", str(half), "--out", str(tmp_path / "a3.jsonl")])
    assert partial.exit_code == 0, partial.output
    assert "chat lines skipped: 1 of 2 lines (line 1: not valid JSON" in partial.output
    strict = runner.invoke(app, base + ["--chat", str(half), "--on-error", "stop", "--out", str(tmp_path / "a4.jsonl")])
    assert strict.exit_code == 3 and "half.jsonl:1" in strict.output
