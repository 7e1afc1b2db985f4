"""Surveillance export: the bounded streaming state, the step graph (``watch`` on onnxruntime) and the clip graph."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mmapps.cli.verbs import build_domain_app
from mmapps.config import config_to_yaml
from mmapps.data.sample import Batch, ModalityBatch
from mmapps.models.build import build_model
from mmapps.plugins import discover_domains
from mmapps.train.checkpoint import save_inference_checkpoint
from mmapps.workflows.resolve import resolve_config
from mmapps_domains.surveillance import domain
from mmapps_domains.surveillance.demo import write_demo_data
from mmapps_domains.surveillance.options import data_options
from mmapps_domains.surveillance.streaming import StreamingScorer, StreamStep

SHAPES = {"audio": (32, 16), "chat": (385,), "video": (4, 2, 32, 32)}  # one window of the smoke recipe's inputs
CONTEXT = 64  # the exported ring buffer: a 600-window stream wraps it 9 times


def smoke_model(seed: int = 0, overrides: tuple[str, ...] = ()) -> torch.nn.Module:
    cfg = resolve_config(domain, "smoke", overrides=["data.root=/nonexistent", *overrides])
    torch.manual_seed(seed)
    return build_model(cfg, domain).eval()


def clip_batch(T: list[int], seed: int, absent: dict[str, list[int]] | None = None) -> Batch:
    """A collated batch of synthetic clips with T[i] windows (padded to max T), modalities absent per clip."""
    g = torch.Generator().manual_seed(seed)
    B, width = len(T), max(T)
    mask = torch.arange(width).unsqueeze(0) < torch.tensor(T).unsqueeze(1)  # (B, T)
    inputs = {}
    for m, shape in SHAPES.items():
        present = torch.tensor([i not in (absent or {}).get(m, []) for i in range(B)])
        data = torch.randn((B, width, *shape), generator=g) * (mask & present.unsqueeze(1)).view(B, width, *[1] * len(shape))
        inputs[m] = ModalityBatch(data, present, mask & present.unsqueeze(1))
    meta = [{"window_starts": [float(t) for t in range(n)]} for n in T]
    return Batch(inputs, {}, [f"c{i}" for i in range(B)], [f"c{i}" for i in range(B)], meta)


def window(batch: Batch, t: int) -> Batch:
    """Window t of clip 0 as the one-window batch `watch` feeds."""
    inputs = {m: ModalityBatch(mb.data[:1, t : t + 1], mb.present[:1] & mb.mask[:1, t], mb.mask[:1, t : t + 1]) for m, mb in batch.inputs.items()}
    return Batch(inputs, {}, ["c0"], ["c0"], [{"window_starts": [float(t)]}])


def test_ring_buffer_equals_whole_clip_within_capacity_then_forgets() -> None:
    model = smoke_model()
    batch = clip_batch([14], seed=1)
    with torch.no_grad():
        full = model(batch)["events"][0]  # (T, C)
    for capacity in (14, 5):
        scorer = StreamingScorer(model, max_context=capacity)
        streamed = torch.stack([scorer.step(window(batch, t)) for t in range(14)])
        torch.testing.assert_close(streamed[:capacity], full[:capacity], atol=1e-5, rtol=1e-4)  # shorter than the capacity: exact
        if capacity < 14:
            assert (streamed[capacity:] - full[capacity:]).abs().max() > 1e-4  # beyond it, the oldest windows are forgotten
    state = scorer.state
    M = 3
    assert state["keys"].shape == (1, 2, 4, 5 * M, 8) and int(state["key_keep"].sum()) == 5 * M  # capacity honoured
    assert sorted(set(state["key_time"][0].tolist())) == [9, 10, 11, 12, 13]  # the last 5 windows
    assert int(state["step"][0, 0]) == 14


def test_ring_buffer_refuses_an_empty_capacity() -> None:
    from mmapps.errors import ConfigError

    with pytest.raises(ConfigError, match="max_context=0"):
        StreamStep(smoke_model(), max_context=0)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """A smoke-recipe checkpoint (untrained weights), exported once through the CLI with a 64-window ring buffer."""
    tmp = tmp_path_factory.mktemp("surveillance-export")
    root = write_demo_data(tmp / "demo", n=5, seed=11)
    cfg = resolve_config(domain, "smoke", overrides=[f"data.root={root}"])
    torch.manual_seed(0)
    model = build_model(cfg, domain).eval()
    checkpoint = tmp / "run" / "checkpoints" / "best.safetensors"
    checkpoint.parent.mkdir(parents=True)
    save_inference_checkpoint(checkpoint, model, config_to_yaml(cfg), {"events": data_options(cfg.data.options).classes})
    app = build_domain_app(next(e for e in discover_domains() if e.name == "surveillance"))
    out = tmp / "export"
    result = CliRunner().invoke(app, ["export", "--checkpoint", str(checkpoint), "--out", str(out), "--set", f"data.options.max_context={CONTEXT}"])
    assert result.exit_code == 0, result.output
    return root, checkpoint, model, out, app


def step_session(out: Path) -> tuple:
    from mmapps.export.session import create_session
    from mmapps.export.sidecar import read_sidecar
    from mmapps.export.spec import TensorSpec

    sidecar, folder = read_sidecar(out)
    step = sidecar.preprocess["step"]
    return create_session(folder / step["file"]), [TensorSpec.from_json(s) for s in step["inputs"]], sidecar


@pytest.mark.slow
def test_step_graph_over_a_600_s_stream_equals_watch(exported: tuple) -> None:
    """One step call per window over 600 one-second windows (synthetic features), two streams in one batch,
    one with modalities missing at times: onnxruntime equals the PyTorch scorer `watch` uses."""
    from mmapps_domains.surveillance.export_step import OnnxStreamingScorer, zero_state

    _, _, model, out, _ = exported
    session, inputs, sidecar = step_session(out)
    assert sidecar.preprocess["step"]["max_context"] == CONTEXT
    names = [o.name for o in session.get_outputs()]
    torch_scorers = [StreamingScorer(model, max_context=CONTEXT) for _ in range(2)]
    onnx_scorer = OnnxStreamingScorer(session, inputs)
    state = zero_state(inputs, 2)
    rng = np.random.default_rng(0)
    worst = worst_single = 0.0
    for t in range(600):
        present = {m: np.array([True, (t + i) % 4 != 0]) for i, m in enumerate(SHAPES)}
        feeds = {m: (rng.standard_normal((2, 1, *s)) * present[m].reshape(2, 1, *[1] * len(s))).astype(np.float32) for m, s in SHAPES.items()}
        feeds |= {f"{m}_present": present[m] for m in SHAPES}
        result = dict(zip(names, session.run(names, feeds | state)))
        state = {n: result[f"{n}_out"] for n in state}
        for b in range(2):
            one = Batch({m: ModalityBatch(torch.from_numpy(feeds[m][b : b + 1]), torch.from_numpy(present[m][b : b + 1]), torch.from_numpy(present[m][b : b + 1, None])) for m in SHAPES}, {}, ["s"], ["s"], [{}])
            ref = torch_scorers[b].step(one).numpy()
            worst = max(worst, float(np.abs(result["events"][b] - ref).max()))
            if b == 0:
                worst_single = max(worst_single, float(np.abs(onnx_scorer.step(one).numpy() - ref).max()))
    assert worst < 1e-4 and worst_single < 1e-4, (worst, worst_single)
    assert int(state["state_step"][0, 0]) == 600 and set(state["state_key_time"][0].tolist()) == set(range(600 - CONTEXT, 600))


def test_step_graph_ignores_absent_windows_and_uses_present_ones(exported: tuple) -> None:
    from mmapps_domains.surveillance.export_step import zero_state

    _, _, _, out, _ = exported
    session, inputs, _ = step_session(out)
    names = [o.name for o in session.get_outputs()]
    rng = np.random.default_rng(1)
    feeds = {m: rng.standard_normal((2, 1, *s)).astype(np.float32) for m, s in SHAPES.items()} | {f"{m}_present": np.array([True, True]) for m in SHAPES}
    feeds["audio_present"] = np.array([True, False])
    feeds["audio"][1] = 0.0
    base = session.run(names, feeds | zero_state(inputs, 2))
    feeds["audio"][1] = rng.uniform(-1e4, 1e4, feeds["audio"][1].shape).astype(np.float32)
    noisy = session.run(names, feeds | zero_state(inputs, 2))
    for a, b in zip(base, noisy):
        np.testing.assert_array_equal(a, b)
    feeds["audio_present"] = np.array([True, True])
    on = session.run(names, feeds | zero_state(inputs, 2))
    assert np.abs(on[0][1] - base[0][1]).max() > 1e-4
    np.testing.assert_allclose(on[0][0], base[0][0], atol=1e-6)  # streams are independent


def test_clip_graph_parity_on_new_shapes_and_mixed_presence(exported: tuple) -> None:
    from mmapps.export.session import load_export

    _, _, model, out, _ = exported
    onnx_model = load_export(out / "model.onnx")
    batch = clip_batch([13, 7, 11], seed=3, absent={"chat": [1], "audio": [0]})
    with torch.no_grad():
        ref = model(batch)["events"].numpy()
    got = onnx_model(batch)["events"].numpy()
    assert got.shape == (3, 13, 3)
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-3)
    feeds = onnx_model.runtime.feeds(batch)
    feeds["chat"][1] = np.random.default_rng(0).uniform(-1e4, 1e4, feeds["chat"][1].shape).astype(np.float32)
    np.testing.assert_allclose(onnx_model.run(feeds)["events"], got, atol=1e-6)  # an absent slot changes nothing


def test_triton_step_model_has_sequence_batching_with_implicit_state(exported: tuple) -> None:
    from mmapps.export.triton import read_triton_config

    _, _, _, out, _ = exported
    session, _, _ = step_session(out)
    config = read_triton_config(out / "triton" / "surveillance_step" / "config.pbtxt")
    assert config.name == "surveillance_step" and config.backend == "onnxruntime" and config.max_batch_size > 0
    graph_inputs = [i.name for i in session.get_inputs()]
    graph_outputs = [o.name for o in session.get_outputs()]
    states = [s for s in config.sequence_batching.state]
    assert sorted(s.input_name for s in states) == sorted(n for n in graph_inputs if n.startswith("state_"))
    assert sorted(s.output_name for s in states) == sorted(n for n in graph_outputs if n.startswith("state_"))
    assert all(s.initial_state[0].zero_data for s in states)
    assert [i.name for i in config.input] == [n for n in graph_inputs if not n.startswith("state_")]
    assert [o.name for o in config.output] == ["events"]
    keys = next(s for s in states if s.input_name == "state_keys")
    assert list(keys.dims) == [2, 4, CONTEXT * 3, 8]
    assert (out / "triton" / "surveillance_step" / "1" / "model.onnx").is_file()
    clip = read_triton_config(out / "triton" / "surveillance" / "config.pbtxt")
    assert not clip.HasField("sequence_batching") and {i.name for i in clip.input} == {i.name for i in __import__("onnx").load(str(out / "model.onnx")).graph.input}


@pytest.mark.slow
def test_watch_on_the_export_equals_watch_on_the_checkpoint(exported: tuple, tmp_path: Path) -> None:
    """A real demo clip end to end: decoding, features, `watch` on onnxruntime vs on PyTorch (same ring capacity)."""
    root, checkpoint, _, out, app = exported
    row = json.loads((root / "manifest.jsonl").read_text().splitlines()[0])
    extra = (["--audio", str(root / row["audio"])] if row.get("audio") else []) + (["--chat", str(root / row["chat"])] if row.get("chat") else [])
    extra += ["--start-time", row["start_time"]] if row.get("chat") and row.get("start_time") else []
    runner = CliRunner()
    scores = {}
    for name, source in (("torch", checkpoint), ("onnx", out)):
        args = ["watch", str(root / row["clip"]), "--checkpoint", str(source), "--out", str(tmp_path / f"{name}.jsonl"), "--scores", str(tmp_path / f"{name}-scores.jsonl"), *extra]
        result = runner.invoke(app, args + (["--max-context", str(CONTEXT)] if name == "torch" else []))
        assert result.exit_code == 0, result.output
        scores[name] = np.array([json.loads(line)["scores"] for line in (tmp_path / f"{name}-scores.jsonl").read_text().splitlines()])
    assert scores["onnx"].shape == scores["torch"].shape and len(scores["torch"]) >= 5
    np.testing.assert_allclose(scores["onnx"], scores["torch"], atol=1e-4)
    bad = runner.invoke(app, ["watch", str(root / row["clip"]), "--checkpoint", str(out), "--max-context", "10", "--out", str(tmp_path / "x.jsonl")])
    assert bad.exit_code != 0 and "fixed at export" in bad.output
