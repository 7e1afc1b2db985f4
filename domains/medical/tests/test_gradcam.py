"""Grad-CAM post-processing: high = salient, so the pointing game looks at the right end of the map."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mmapps_domains.medical.gradcam import scale_to_unit


class BrightnessNet(nn.Module):
    """logit = mean of relu(conv(image)) with a positive kernel: bright pixels raise the logit."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        with torch.no_grad():
            self.features[0].weight.fill_(0.1)
            self.features[0].bias.zero_()
        self.head = nn.Linear(4, 1)
        with torch.no_grad():
            self.head.weight.fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))


def test_saliency_maximum_is_on_the_evidence_not_flipped():
    from monai.visualize import GradCAM

    image = torch.zeros(1, 1, 32, 32)
    image[..., 20:26, 4:10] = 1.0  # the only evidence for the class
    ours = GradCAM(BrightnessNet(), target_layers="features.1", postprocessing=scale_to_unit)(image, class_idx=0)[0, 0].detach().numpy()
    r, c = np.unravel_index(np.argmax(ours), ours.shape)
    assert 20 <= r < 26 and 4 <= c < 10
    assert ours.min() == 0.0 and ours.max() == 1.0
    flipped = GradCAM(BrightnessNet(), target_layers="features.1")(image, class_idx=0)[0, 0].detach().numpy()  # MONAI's default maps max -> 0
    r, c = np.unravel_index(np.argmax(flipped), flipped.shape)
    assert not (20 <= r < 26 and 4 <= c < 10)


def test_constant_map_stays_zero():
    assert torch.equal(scale_to_unit(torch.full((2, 1, 4, 4), 3.0)), torch.zeros(2, 1, 4, 4))


@pytest.mark.parametrize(("backbone", "size", "expected"), [
    ("resnet18", 128, "trunk.5"),  # layer2: 16 x 16, where layer4 would be 4 x 4
    ("densenet121", 256, "trunk.0.denseblock2"),  # 32 x 32, before transition2 pools to 16 x 16
    ("small_cnn", 48, "trunk.8"),  # the small CNN's last stage already has stride 8
])
def test_target_layer_is_the_deepest_stage_with_output_stride_8(backbone, size, expected):
    from mmapps.models.encoders.image import build_image_trunk
    from mmapps_domains.medical.gradcam import target_layer

    model = nn.Module()
    model.encoders = nn.ModuleDict({"image": nn.Module()})
    model.encoders["image"].trunk = build_image_trunk(backbone, in_channels=1)[0]
    assert target_layer(model.eval(), torch.zeros(1, 1, size, size)) == f"model.encoders.image.{expected}"
