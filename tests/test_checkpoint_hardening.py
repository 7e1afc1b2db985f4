"""Checkpoint hardening: tagged YAML, another domain's checkpoint, NaN/inf weights, failed writes,
temporaries of interrupted writes, and the run-folder lock."""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from mmapps.errors import CheckpointError, NothingToResumeError, WriteError
from mmapps.train import checkpoint as ckpt
from mmapps.train.lock import RunLock


def _rewrite_metadata(path: Path, **changes: str) -> None:
    """Rewrite a checkpoint's metadata the way a third party would, with safetensors itself."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata())
        state = {k: handle.get_tensor(k) for k in handle.keys()}
    save_file(state, str(path), metadata={**metadata, **changes})


def test_yaml_tag_in_checkpoint_metadata_is_a_clean_checkpoint_error(tmp_path):
    path = tmp_path / "best.safetensors"
    ckpt.save_inference_checkpoint(path, nn.Linear(2, 2), "domain: x\n", {})
    _rewrite_metadata(path, config="domain: !!python/object/apply:os.system ['echo pwned']\n")
    _, metadata = ckpt.read_inference_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"not plain YAML .*could not determine a constructor"):
        ckpt.checkpoint_config(metadata, path, "x")


def test_checkpoint_of_another_domain_names_the_domain_before_any_config_validation(tmp_path):
    path = tmp_path / "best.safetensors"
    # a surveillance config is invalid for medical (unknown fields) and would fail validation first
    ckpt.save_inference_checkpoint(path, nn.Linear(2, 2), "domain: surveillance\ndata:\n  not_a_field: 1\n", {})
    _, metadata = ckpt.read_inference_checkpoint(path)
    with pytest.raises(CheckpointError, match="this checkpoint was trained by the surveillance domain, not medical"):
        ckpt.checkpoint_config(metadata, path, "medical")
    assert ckpt.checkpoint_config(metadata, path, "surveillance")["domain"] == "surveillance"


def test_cli_evaluate_with_another_domains_checkpoint_exits_4_naming_it(shapes_smoke_run, tmp_path):
    from typer.testing import CliRunner

    from mmapps.cli.main import app

    result = CliRunner().invoke(app, ["medical", "evaluate", "--checkpoint", str(shapes_smoke_run.run_dir / "checkpoints" / "best.safetensors"), "--out", str(tmp_path / "e")])
    assert result.exit_code == 4, result.output
    assert "trained by the shapes domain" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_are_refused_at_load(tmp_path, bad):
    model = nn.Linear(3, 2)
    with torch.no_grad():
        model.weight[0, 1] = bad
    path = tmp_path / "best.safetensors"
    ckpt.save_inference_checkpoint(path, model, "domain: x\n", {})
    state, _ = ckpt.read_inference_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"NaN or infinite weights, e.g. weight \(1 of 6 values\)"):
        ckpt.load_weights(nn.Linear(3, 2), state, path)


def test_finite_weights_load(tmp_path):
    path = tmp_path / "best.safetensors"
    ckpt.save_inference_checkpoint(path, nn.Linear(3, 2), "domain: x\n", {})
    state, _ = ckpt.read_inference_checkpoint(path)
    ckpt.load_weights(nn.Linear(3, 2), state, path)


@pytest.fixture
def file_size_limit():
    """Make the kernel refuse writes beyond 64 kB (EFBIG), as a full disk refuses them (ENOSPC)."""
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, old_limit[1]))

    yield apply
    resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
    signal.signal(signal.SIGXFSZ, old_handler)


@pytest.mark.parametrize("kind", ["training state", "inference"])
def test_failed_write_is_a_clean_error_and_keeps_the_last_good_checkpoint(tmp_path, file_size_limit, kind):
    small, big = nn.Linear(2, 2), nn.Linear(200, 200)  # 160 kB of weights: beyond the limit
    name = ckpt.TRAINING_STATE_FILE if kind == "training state" else "last.safetensors"
    path = tmp_path / name

    def save(model: nn.Module) -> None:
        if kind == "training state":
            ckpt.save_training_state(path, {"model": model.state_dict()})
        else:
            ckpt.save_inference_checkpoint(path, model, "domain: x\n", {})

    save(small)
    good = path.read_bytes()
    file_size_limit()
    with pytest.raises(WriteError) as info:
        save(big)
    message = str(info.value)
    assert str(path) in message and "EFBIG" in message and "MB free of" in message and "keeps its previous content" in message
    assert path.read_bytes() == good, "the last good checkpoint is intact"
    assert not list(tmp_path.glob(".*.tmp")), "no temporary file left"
    assert WriteError.exit_code == 8


def test_write_error_names_enospc_and_free_space():
    err = WriteError.from_os_error("/tmp/x/last.pt", OSError(errno.ENOSPC, "No space left on device"))
    assert "cannot write /tmp/x/last.pt: ENOSPC (No space left on device)" in str(err) and "MB free" in str(err)


def test_stale_temporaries_are_removed(tmp_path):
    (tmp_path / ".last.pt.abc123.tmp").write_bytes(b"x" * 1000)
    (tmp_path / ".best.safetensors.q9.tmp").write_bytes(b"y" * 10)
    (tmp_path / "last.pt").write_bytes(b"keep")
    removed = ckpt.clean_stale_temporaries(tmp_path)
    assert sorted((p.name, n) for p, n in removed) == [(".best.safetensors.q9.tmp", 10), (".last.pt.abc123.tmp", 1000)]
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_inference_and_training_state_temporaries_share_one_pattern(tmp_path, monkeypatch):
    seen = []
    real = ckpt.tempfile.mkstemp

    def spy(**kwargs):
        fd, name = real(**kwargs)
        seen.append(Path(name).name)
        return fd, name

    monkeypatch.setattr(ckpt.tempfile, "mkstemp", spy)
    ckpt.save_inference_checkpoint(tmp_path / "best.safetensors", nn.Linear(2, 2), "domain: x\n", {})
    ckpt.save_training_state(tmp_path / ckpt.TRAINING_STATE_FILE, {"epoch": 1})
    assert seen[0].startswith(".best.safetensors.") and seen[1].startswith(f".{ckpt.TRAINING_STATE_FILE}.") and all(s.endswith(".tmp") for s in seen)


def test_missing_training_state_is_nothing_to_resume(tmp_path):
    with pytest.raises(NothingToResumeError, match="nothing to resume") as info:
        ckpt.load_training_state(tmp_path / "checkpoints" / ckpt.TRAINING_STATE_FILE)
    assert f"checkpoints/{ckpt.TRAINING_STATE_FILE}" in str(info.value)


def test_second_holder_of_a_run_folder_is_refused_naming_the_holder(tmp_path):
    code = f"from mmapps.train.lock import RunLock; RunLock({str(tmp_path)!r}).acquire()"
    with RunLock(tmp_path):
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert proc.returncode != 0
        assert "RunLockedError: run folder" in proc.stderr and "in use by another run" in proc.stderr
        assert f"pid {os.getpid()} on" in proc.stderr, "the message names the holder"
    assert (tmp_path / ".mmapps.lock").read_text() == "", "released"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_stale_lock_of_a_killed_process_is_taken_over(tmp_path):
    code = f"import os, signal; from mmapps.train.lock import RunLock; RunLock({str(tmp_path)!r}).acquire(); os.kill(os.getpid(), signal.SIGKILL)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    dead = json.loads((tmp_path / ".mmapps.lock").read_text())
    assert dead["pid"] != os.getpid()
    with RunLock(tmp_path) as lock:
        assert lock.replaced["pid"] == dead["pid"]
        assert json.loads((tmp_path / ".mmapps.lock").read_text())["pid"] == os.getpid()
