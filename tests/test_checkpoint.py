import pytest
import torch
from torch import nn

from mmapps.errors import CheckpointError
from mmapps.train import checkpoint as ckpt


def test_inference_checkpoint_round_trip(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    path = tmp_path / "best.safetensors"
    ckpt.save_inference_checkpoint(path, model, "domain: x\n", {"task": ["a", "b"]})
    state, metadata = ckpt.read_inference_checkpoint(path)
    other = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ckpt.load_weights(other, state, path)
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    assert metadata["config"] == "domain: x\n" and '"task"' in metadata["labels"]
    assert not list(tmp_path.glob(".*.tmp")), "atomic write leaves no temporary file"


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "best.safetensors"
    ckpt.save_inference_checkpoint(path, nn.Linear(30, 30), "domain: x\n", {})
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        ckpt.read_inference_checkpoint(path)


def test_foreign_safetensors_file_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="not written by mmapps"):
        ckpt.read_inference_checkpoint(path)


def test_checkpoint_of_another_model_is_explained(tmp_path):
    path = tmp_path / "best.safetensors"
    ckpt.save_inference_checkpoint(path, nn.Linear(3, 4), "domain: x\n", {})
    state, _ = ckpt.read_inference_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not match this model"):
        ckpt.load_weights(nn.Linear(3, 5), state, path)
