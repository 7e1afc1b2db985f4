"""Image backbones start from local weight files (never a download unless asked)."""

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
