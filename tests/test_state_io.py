"""The pickle-free resumable state (`mmapps.train.state_io`, `checkpoint.save/load_training_state`):
an exact round trip of real model, optimiser and RNG state; an old pickle-based ``last.pt`` is
refused without being opened; damaged, foreign and newer files get clear errors."""

from __future__ import annotations

import json
import math
import os
import pickle
import struct
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
import torch
from torch import nn

from mmapps.errors import CheckpointError
from mmapps.train import checkpoint as ckpt
from mmapps.train import state_io


def _same(a, b, where: str = "/") -> None:
    """Deep equality that also checks container types, tensor dtypes and bits, and NaN."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, Mapping):
        assert isinstance(b, Mapping) and list(a) == list(b), where
        for key in a:
            _same(a[key], b[key], f"{where}{key}/")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}{i}/")
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), where
    else:
        assert type(a) is type(b) and a == b, where


def _trained(seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.99))
    for _ in range(3):
        model(torch.randn(5, 3)).pow(2).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
    return model, optimizer


def _step(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    model(torch.randn(5, 3)).pow(2).sum().backward()
    optimizer.step()
    optimizer.zero_grad()


def test_round_trip_is_exact_and_training_continues_bit_equal(tmp_path: Path) -> None:
    model, optimizer = _trained()
    shared = torch.arange(6.0)
    tree = {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng_cpu": torch.get_rng_state(),
        "global_step": 3, "best_metric": math.nan, "worst": -math.inf, "ratio": 0.1, "flag": False, "none": None,
        "schedule": {"total_steps": 10}, "pair": (1, "a", 2.5), "$odd": {1: "int key", "s": [True]}, "empty": [torch.zeros(0, 3), torch.zeros(0)],
        "views": [shared[:2], shared], "bf16": torch.ones(3, dtype=torch.bfloat16) / 3, "a/b": torch.ones(1), "a": {"b": torch.zeros(1)},
    }
    path = tmp_path / ckpt.TRAINING_STATE_FILE
    ckpt.save_training_state(path, tree)
    back = ckpt.load_training_state(path)
    _same(tree, back)
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.8, 0.99) and list(back["optimizer"]["state"]) == [0, 1, 2, 3, 4, 5]

    # the restored model + optimiser take the next step exactly as the originals do
    twin, twin_optimizer = _trained(seed=1)
    twin.load_state_dict(back["model"])
    twin_optimizer.load_state_dict(back["optimizer"])
    torch.set_rng_state(back["rng_cpu"])
    _step(twin, twin_optimizer)
    torch.set_rng_state(tree["rng_cpu"])
    _step(model, optimizer)
    for (name, a), b in zip(model.state_dict().items(), twin.state_dict().values()):
        assert torch.equal(a, b), name

    light = ckpt.load_training_state(path, tensors=False)
    assert light["global_step"] == 3 and light["model"]["0.weight"] is None and light["pair"] == (1, "a", 2.5)


def test_the_file_is_plain_safetensors_with_a_json_layout(tmp_path: Path) -> None:
    path = tmp_path / ckpt.TRAINING_STATE_FILE
    ckpt.save_training_state(path, {"w": torch.ones(2), "history": [{"epoch": 0, "val": math.nan}]})
    raw = path.read_bytes()
    size = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + size])  # an independent reader: the safetensors layout is 8 bytes + a JSON header
    meta = header["__metadata__"]
    assert meta["format"] == state_io.FORMAT and meta["format_version"] == str(state_io.FORMAT_VERSION) and meta["kind"] == ckpt.TRAINING_STATE_KIND
    assert json.loads(meta["layout"]) == {"w": {"$tensor": "w"}, "history": [{"epoch": 0, "val": {"$float": "nan"}}]}
    assert header["w"]["dtype"] == "F32" and header["w"]["shape"] == [2]


class _Bomb:
    """Unpickling this creates the marker file: the proof that a pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_an_old_pickle_last_pt_is_refused_unopened_with_what_to_do(tmp_path: Path) -> None:
    checkpoints = tmp_path / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    marker = tmp_path / "pickle-ran"
    (checkpoints / ckpt.LEGACY_TRAINING_STATE_FILE).write_bytes(pickle.dumps({"model": _Bomb(marker)}))
    with pytest.raises(CheckpointError) as info:
        ckpt.load_training_state(checkpoints / ckpt.TRAINING_STATE_FILE)
    message = str(info.value)
    assert str(checkpoints / "last.pt") in message and "no longer reads pickle files" in message and "not loaded" in message
    assert "without --resume" in message and f"--init {checkpoints / 'last.safetensors'}" in message and "\n" not in message
    assert not marker.exists()


def test_resume_of_a_run_with_an_old_last_pt_exits_4_through_the_cli(shapes_site: Path, tmp_path: Path) -> None:
    run = tmp_path / "old-run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("domain: shapes\nrecipe: smoke\n")
    marker = tmp_path / "pickle-ran"
    (run / "checkpoints" / "last.pt").write_bytes(pickle.dumps(_Bomb(marker)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shapes_site), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "mmapps", "shapes", "train", "--resume", str(run)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == CheckpointError.exit_code == 4, proc.stderr[-2000:]
    assert "old pickle-based format" in proc.stderr and "Traceback" not in proc.stderr and not marker.exists()


def test_damaged_foreign_and_newer_state_files_are_clear_errors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / ckpt.TRAINING_STATE_FILE
    ckpt.save_training_state(path, {"w": torch.ones(1000)})
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated"):
        ckpt.load_training_state(path)

    save_file({"w": torch.ones(1)}, str(path))  # someone else's safetensors file
    with pytest.raises(CheckpointError, match="not an mmapps training-state"):
        ckpt.load_training_state(path)

    save_file({"w": torch.ones(1)}, str(path), metadata={"format": state_io.FORMAT, "kind": ckpt.TRAINING_STATE_KIND, "format_version": "99", "layout": "{}"})
    with pytest.raises(CheckpointError, match="format version '99', but this mmapps reads versions up to 1"):
        ckpt.load_training_state(path)

    save_file({"w": torch.ones(1)}, str(path), metadata={"format": state_io.FORMAT, "kind": ckpt.TRAINING_STATE_KIND, "format_version": "1", "layout": '{"x": {"$tensor": "gone"}}'})
    with pytest.raises(CheckpointError, match="names the tensor 'gone'"):
        ckpt.load_training_state(path)


def test_the_state_file_given_as_an_inference_checkpoint_points_to_best_and_last(tmp_path: Path) -> None:
    path = tmp_path / ckpt.TRAINING_STATE_FILE
    ckpt.save_training_state(path, {"model": nn.Linear(2, 2).state_dict()})
    with pytest.raises(CheckpointError, match="resumable training state") as info:
        ckpt.read_inference_checkpoint(path)
    assert str(tmp_path / "best.safetensors") in str(info.value)


@pytest.mark.parametrize("value", [{1, 2}, b"bytes", object()])
def test_values_outside_the_format_are_refused_when_written(value) -> None:
    with pytest.raises(TypeError, match="state at x: a .* cannot be stored"):
        state_io.dumps({"x": value}, "k")
