"""2D image CNN encoder (torchvision ResNets, MONAI DenseNet121, or a small CNN), 1 or 3 channels."""

from __future__ import annotations

import shlex
from pathlib import Path

import torch
from torch import nn

from mmapps.data.sample import ModalityBatch
from mmapps.models.pooling import masked_mean
from mmapps.models.types import EncoderOutput
from mmapps.registry import ENCODERS

_RESNETS = ("resnet18", "resnet34", "resnet50")


def build_image_trunk(backbone: str, in_channels: int, width: int = 32) -> tuple[nn.Module, int]:
    """Return a randomly initialised CNN mapping (N, C, H, W) to a feature map (N, C', h, w), and C'.

    Args:
        backbone: resnet18 | resnet34 | resnet50 | densenet121 | small_cnn.
        in_channels: 1 (radiographs) or 3 (camera images).
        width: channel width of ``small_cnn``.
    """
    if backbone in _RESNETS:
        import torchvision

        net = getattr(torchvision.models, backbone)(weights=None)
        if in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        trunk = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4)
        return trunk, net.fc.in_features
    if backbone == "densenet121":
        from monai.networks.nets import DenseNet121

        net = DenseNet121(spatial_dims=2, in_channels=in_channels, out_channels=1)
        return nn.Sequential(net.features, nn.ReLU()), 1024
    if backbone == "small_cnn":
        layers: list[nn.Module] = []
        channels = in_channels
        for out in (width, width * 2, width * 4):
            layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            channels = out
        return nn.Sequential(*layers), channels
    raise ValueError(f"image_cnn: unknown backbone {backbone!r}; expected one of {(*_RESNETS, 'densenet121', 'small_cnn')}")


# The one-line conversions a user runs in an environment they trust with the file (docs/install.md, "Offline use").
CONVERT_IMAGENET = (
    "python -c \"import sys, torch, torchvision; from safetensors.torch import save_file; "
    "n = getattr(torchvision.models, sys.argv[1])(weights='DEFAULT'); "
    "t = torch.nn.Sequential(n.conv1, n.bn1, n.relu, n.maxpool, n.layer1, n.layer2, n.layer3, n.layer4); "
    "save_file({{k: v.contiguous() for k, v in t.state_dict().items()}}, sys.argv[2])\" {backbone} {dst}"
)
CONVERT_TO_SAFETENSORS = (
    "python -c \"import sys, torch; from safetensors.torch import save_file; "
    "save_file({{k: v.contiguous() for k, v in torch.load(sys.argv[1], map_location='cpu', weights_only=True).items()}}, sys.argv[2])\" {src} {dst}"
)


def load_local_weights(module: nn.Module, path: str | Path) -> None:
    """Load trunk weights from a local ``.safetensors`` file (the only format read: nothing is unpickled).

    Raises:
        FileNotFoundError: no such file.
        ValueError: another format (a torch ``.pt``/``.pth`` pickle gets the conversion command),
            an unreadable file, or weights whose names match nothing in the backbone.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights {path}: not found (give a local .safetensors file)")
    if path.suffix != ".safetensors":
        convert = CONVERT_TO_SAFETENSORS.format(src=shlex.quote(str(path)), dst=shlex.quote(str(path.with_suffix(".safetensors"))))
        raise ValueError(
            f"pretrained weights {path}: a {path.suffix or 'suffix-less'} file, but only .safetensors weights are read (a torch "
            f".pt/.pth file is a pickle, and loading one can run code planted in it). If you trust the file, convert it once, "
            f"in your own environment: {convert} and give the .safetensors file"
        )
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except Exception as err:  # safetensors raises several error types for bad headers
        raise ValueError(f"pretrained weights {path}: not a readable safetensors file ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); it may be truncated") from None
    _adapt_first_conv(module, state)
    target = module.state_dict()
    wrong = [f"{k} (file {tuple(v.shape)}, backbone {tuple(target[k].shape)})" for k, v in state.items() if k in target and v.shape != target[k].shape]
    if wrong:
        raise ValueError(f"pretrained weights {path}: {len(wrong)} tensor(s) of another shape, e.g. {'; '.join(wrong[:3])}; they were saved from another backbone or width")
    missing, unexpected = module.load_state_dict(state, strict=False)
    if len(missing) == len(module.state_dict()):
        raise ValueError(f"pretrained weights {path}: no parameter name matches the backbone (unexpected keys such as {unexpected[:3]})")


def _adapt_first_conv(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """RGB filters of the first convolution into a trunk of another channel count: their mean per
    filter, repeated (the usual start of a radiograph model from ImageNet weights)."""
    first = next((name for name, m in module.named_modules() if isinstance(m, nn.Conv2d)), None)
    key = f"{first}.weight"
    if first is None or key not in state:
        return
    have, want = state[key], module.state_dict()[key]
    if have.dim() == 4 and have.shape[1] == 3 and want.shape[1] != 3 and have.shape[0] == want.shape[0] and have.shape[2:] == want.shape[2:]:
        state[key] = have.mean(1, keepdim=True).repeat(1, want.shape[1], 1, 1)


def _imagenet_message(backbone: str) -> str:
    if backbone not in _RESNETS:
        return f"image_cnn: ImageNet weights are available for {_RESNETS}; for {backbone!r} give a local .safetensors weights file"
    convert = CONVERT_IMAGENET.format(backbone=backbone, dst=f"{backbone}-imagenet.safetensors")
    return (
        "image_cnn: pretrained='imagenet' is not fetched at run time: torchvision ships its ImageNet weights as pickles (.pth), "
        f"which mmapps does not load. Convert them once, where you trust torchvision's download: {convert} and set "
        f"pretrained=<path to {backbone}-imagenet.safetensors> (a 1-channel trunk averages the first convolution's RGB filters)"
    )


@ENCODERS.register("image_cnn")
class ImageCnnEncoder(nn.Module):
    """Images -> patch tokens: each image's feature map becomes h*w tokens of width `dim`.

    Accepts fixed ``(B, C, H, W)`` or padded ``(B, E, C, H, W)`` batches (several images per sample);
    padded elements are not run through the network.

    Args:
        dim: output width.
        backbone: see `build_image_trunk`.
        in_channels: 1 or 3.
        pretrained: a local ``.safetensors`` weights file for the trunk (`load_local_weights`;
            for torchvision's ImageNet ResNets, convert them once with `CONVERT_IMAGENET`);
            None = random init.
        width: channel width of ``small_cnn``.
    """

    def __init__(self, dim: int, backbone: str = "resnet18", in_channels: int = 1, pretrained: str | None = None, width: int = 32) -> None:
        super().__init__()
        if pretrained == "imagenet":
            raise ValueError(_imagenet_message(backbone))
        self.trunk, trunk_dim = build_image_trunk(backbone, in_channels, width)
        if pretrained:
            load_local_weights(self.trunk, pretrained)
        self.proj = nn.Conv2d(trunk_dim, dim, kernel_size=1)
        self.out_dim = dim

    def forward(self, mb: ModalityBatch) -> EncoderOutput:
        images = mb.data if mb.data.dim() == 5 else mb.data.unsqueeze(1)  # (B, E, C, H, W)
        B, E = images.shape[:2]
        element_mask = mb.mask if mb.mask is not None else torch.ones(B, E, dtype=torch.bool, device=images.device)
        element_mask = element_mask & mb.present.unsqueeze(1)
        flat = images.flatten(0, 1)  # (B*E, C, H, W)
        real = element_mask.flatten().nonzero().squeeze(1)
        if real.numel() == 0:  # nothing to encode: run one element so shapes are known
            real = torch.zeros(1, dtype=torch.long, device=images.device)
        fmap_real = self.proj(self.trunk(flat[real].float()))  # (N_real, D, h, w)
        D, h, w = fmap_real.shape[1:]
        fmap = fmap_real.new_zeros((B * E, D, h, w))
        fmap[real] = fmap_real
        fmap = fmap.view(B, E, D, h, w)
        tokens = fmap.flatten(3).transpose(2, 3).reshape(B, E * h * w, D)  # (B, E*h*w, D)
        token_mask = element_mask.repeat_interleave(h * w, dim=1)  # (B, E*h*w)
        return EncoderOutput(tokens, token_mask, masked_mean(tokens, token_mask), fmap[:, 0])
