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


def _fusion_model(backbone: str) -> nn.Module:
    """A medical-shaped model: image CNN + frozen MiniLM note tokens -> attention fusion -> 4 findings, eval mode."""
    from mmapps.models.build import register_core_parts
    from mmapps.models.fusion_model import FusionModel
    from mmapps.registry import ENCODERS, FUSIONS, HEADS

    register_core_parts()
    torch.manual_seed(0)
    encoders = nn.ModuleDict({
        "image": ENCODERS.get("image_cnn")(dim=16, backbone=backbone, in_channels=1, width=8),
        "note": ENCODERS.get("text_transformer")(dim=16, max_length=32),
    })
    fusion = FUSIONS.get("attention")({"image": 16, "note": 16}, dim=16, heads=2, layers=1)
    return FusionModel(encoders, fusion, nn.ModuleDict({"findings": HEADS.get("multilabel")(16, 4)})).eval()


@pytest.mark.parametrize(("backbone", "size"), [("resnet18", 64), ("small_cnn", 48)])
def test_batched_gradcam_equals_monai_per_study_and_finding(backbone, size):
    from monai.visualize import GradCAM

    from mmapps_domains.medical.gradcam import ImageLogits, batched_gradcam, target_layer

    model = _fusion_model(backbone)
    g = torch.Generator().manual_seed(1)
    studies = [torch.rand(1, size, size, generator=g) for _ in range(3)]
    notes = ["small left pleural effusion", None, "cardiomegaly, no edema"]
    rows = [(0, 0), (0, 2), (1, 1), (2, 3), (2, 0)]  # (study, finding): a study repeated per finding
    images = torch.stack([studies[s] for s, _ in rows])
    layer = target_layer(model, images[:1])
    maps = batched_gradcam(model, layer, images, [notes[s] for s, _ in rows], [j for _, j in rows])
    assert maps.shape == (len(rows), 1, size, size)
    assert all(p.grad is None for p in model.parameters())  # only the activations were differentiated
    for row, (s, j) in enumerate(rows):  # the per-study result it replaces: MONAI's GradCAM, one study and finding at a time
        cam = GradCAM(nn_module=ImageLogits(model, notes[s]), target_layers=layer, postprocessing=scale_to_unit)
        expected = cam(studies[s].unsqueeze(0), class_idx=j)
        torch.testing.assert_close(maps[row : row + 1], expected.detach(), atol=1e-5, rtol=0)
    assert not torch.allclose(maps[0], maps[1], atol=1e-3)  # the finding matters, so rows are not one map repeated


def _write_xray(path, burned_in: str | None, pixels: np.ndarray) -> None:
    """A CR image written by pydicom, with BurnedInAnnotation set as given (None: absent)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, "CR"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    if burned_in is not None:
        ds.BurnedInAnnotation = burned_in
    ds.save_as(path, enforce_file_format=True)


def test_figures_withhold_pixels_unless_burned_in_annotation_is_no(tmp_path):
    from mmapps_domains.medical.gradcam import _plot, pixels_verified

    pixels = (np.arange(16 * 16).reshape(16, 16) * 7 % 4096)
    for name, value in (("no.dcm", "NO"), ("yes.dcm", "YES"), ("absent.dcm", None)):
        _write_xray(tmp_path / name, value, pixels)
    (tmp_path / "not_dicom.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    assert pixels_verified(tmp_path / "no.dcm")
    assert not any(pixels_verified(tmp_path / n) for n in ("yes.dcm", "absent.dcm", "not_dicom.png", "missing.dcm"))

    saliency = np.linspace(0, 1, 32 * 32).reshape(32, 32)
    rendered = {}
    for label, image in (("a", np.zeros((32, 32))), ("b", np.eye(32))):
        for shown in (True, False):
            out = tmp_path / f"{label}_{shown}"
            _plot([(image if shown else None, saliency, "Edema", None, (32, 32))], out)
            rendered[label, shown] = (out / "medical_gradcam.png").read_bytes()
    assert rendered["a", True] != rendered["b", True]  # the radiograph is drawn when verified
    assert rendered["a", False] == rendered["b", False]  # withheld: nothing of the pixels reaches the figure
