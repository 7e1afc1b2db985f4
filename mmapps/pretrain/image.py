"""SparK-style masked image modelling for CNN encoders (`image_cnn`, and any encoder with a CNN ``trunk``).

The mask unit is one cell of the trunk's output grid (stride x stride pixels). Hidden units are
zeroed in the input and kept zero after every layer of the trunk (re-masked at each stage's
resolution), and batch normalisation uses statistics over visible positions only: the sparse
convolution of SparK (Tian et al., 2023) emulated on dense tensors, so a CNN's receptive field
carries no hidden content into visible tokens and the BN statistics are not biased by the holes.
Target: the normalised pixels of each hidden unit (per-patch mean and variance, as MAE's norm-pix).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmapps.data.sample import ModalityBatch
from mmapps.pretrain.contract import (
    EncodedModality,
    FusedContext,
    MaskKeys,
    ModalityMask,
    ModalityObjective,
    ModalityTarget,
)
from mmapps.pretrain.decoder import UnitDecoder
from mmapps.pretrain.masking import draw_units, upsample_units

_SPATIAL = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Identity)


def _images(mb: ModalityBatch) -> tuple[Tensor, Tensor]:
    """(B, E, C, H, W) images and their (B, E) element mask (present and real)."""
    images = mb.data if mb.data.dim() == 5 else mb.data.unsqueeze(1)
    B, E = images.shape[:2]
    element = mb.mask if mb.mask is not None else torch.ones(B, E, dtype=torch.bool, device=images.device)
    return images, element & mb.present.unsqueeze(1)


def _masked_batch_norm(bn: nn.BatchNorm2d, holder: dict[str, Tensor]):
    """A BatchNorm2d forward whose statistics (and running-statistics update) use visible positions only."""

    def forward(x: Tensor) -> Tensor:
        m = F.interpolate(holder["units"], size=x.shape[-2:], mode="nearest").to(x.dtype)  # (N, 1, h, w)
        if bn.training or not bn.track_running_stats:
            count = m.sum().clamp_min(1.0)
            mean = (x * m).sum((0, 2, 3)) / count  # (C,)
            var = (((x - mean.view(1, -1, 1, 1)) ** 2) * m).sum((0, 2, 3)) / count
            if bn.training and bn.track_running_stats:
                with torch.no_grad():
                    bn.num_batches_tracked += 1
                    momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
                    unbiased = var * count / (count - 1).clamp_min(1.0)
                    bn.running_mean.mul_(1 - momentum).add_(momentum * mean.detach())
                    bn.running_var.mul_(1 - momentum).add_(momentum * unbiased.detach())
        else:
            mean, var = bn.running_mean, bn.running_var
        y = (x - mean.view(1, -1, 1, 1)) * torch.rsqrt(var.view(1, -1, 1, 1) + bn.eps)
        if bn.affine:
            y = y * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)
        return y * m

    return forward


@contextlib.contextmanager
def sparse_trunk(trunk: nn.Module, units: Tensor) -> Iterator[None]:
    """Run `trunk` as a sparse CNN over the visible units ``(N, h, w)`` (1 = visible) of its N inputs."""
    holder = {"units": units.unsqueeze(1).float()}  # (N, 1, h, w)
    handles, patched = [], []

    def remask(module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
        if not isinstance(output, Tensor) or output.dim() != 4:
            return output
        return output * F.interpolate(holder["units"], size=output.shape[-2:], mode="nearest").to(output.dtype)

    for module in trunk.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.forward = _masked_batch_norm(module, holder)  # instance attribute: restored below
            patched.append(module)
        elif isinstance(module, _SPATIAL):
            handles.append(module.register_forward_hook(remask))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        for module in patched:
            del module.forward


class SparkImageObjective(ModalityObjective):
    """Masked image modelling for an encoder with a CNN ``trunk`` and a 1x1 ``proj`` (`ImageCnnEncoder`).

    Args:
        encoder: the image encoder (its trunk's stride sets the unit).
        context_dim: fused token width.
        modalities, modality: see `UnitDecoder`.
        ratio: share of each image's units hidden (SparK uses 0.6).
        in_channels: image channels C.
        decoder_dim, layers, heads: decoder size.
    """

    unit = "trunk-stride patch"
    target_name = "normalised pixels of hidden patches"

    def __init__(self, encoder: nn.Module, context_dim: int, modalities: tuple[str, ...], modality: str, ratio: float, in_channels: int, decoder_dim: int, layers: int, heads: int) -> None:
        super().__init__()
        self.ratio = ratio
        self.in_channels = in_channels
        self._grids: dict[tuple[int, int], tuple[int, int]] = {}
        self._encoder_ref = [encoder]  # not a submodule: the encoder belongs to the model
        probe = 128
        self.patch = probe // self.grid((probe, probe), torch.device("cpu"))[0]  # the trunk's stride
        self.decoder = UnitDecoder(context_dim, decoder_dim, in_channels * self.patch**2, modalities, modality, layers, heads)

    def grid(self, size: tuple[int, int], device: torch.device) -> tuple[int, int]:
        """The trunk's output grid (h, w) for inputs of `size`, found once per size by a dry run in eval mode."""
        if size not in self._grids:
            trunk = self._encoder_ref[0].trunk
            was_training = trunk.training
            trunk.eval()
            with torch.no_grad():
                out = trunk(torch.zeros(1, self.in_channels, *size, device=next(trunk.parameters()).device))
            trunk.train(was_training)
            self._grids[size] = tuple(out.shape[-2:])
        return self._grids[size]

    def patches(self, images: Tensor, grid: tuple[int, int]) -> Tensor:
        """(B, E, C, H, W) -> (B, E*h*w, C*p*p) pixel patches of the unit grid (zero-padded or cropped to h*p x w*p)."""
        B, E, C, H, W = images.shape
        h, w = grid
        p = self.patch
        flat = images.float().flatten(0, 1)[..., : h * p, : w * p]
        flat = F.pad(flat, (0, w * p - flat.shape[-1], 0, h * p - flat.shape[-2]))  # (B*E, C, h*p, w*p)
        return F.unfold(flat, kernel_size=p, stride=p).transpose(1, 2).reshape(B, E * h * w, -1)

    def draw(self, mb: ModalityBatch, keys: MaskKeys, stream: int) -> ModalityMask:
        images, element = _images(mb)
        B, E, C, H, W = images.shape
        h, w = self.grid((H, W), images.device)
        real = element.repeat_interleave(h * w, dim=1)  # (B, E*h*w)
        hidden = draw_units(real, keys, stream, self.ratio)
        return ModalityMask(hidden, real, torch.zeros(B, dtype=torch.bool, device=real.device), (E, h, w))

    def encode(self, encoder: nn.Module, mb: ModalityBatch, mask: ModalityMask) -> EncodedModality:
        images, element = _images(mb)
        B, E, C, H, W = images.shape
        _, h, w = mask.grid
        visible = mask.visible.view(B, E, h, w)  # (B, E, h, w)
        pixels = upsample_units(visible.flatten(0, 1), (H, W)).view(B, E, 1, H, W)
        masked = ModalityBatch((images.float() * pixels).squeeze(1) if mb.data.dim() == 4 else images.float() * pixels, mb.present, mb.mask, mb.offsets)
        real = element.flatten().nonzero().squeeze(1)
        if real.numel() == 0:
            real = torch.zeros(1, dtype=torch.long, device=images.device)
        with sparse_trunk(encoder.trunk, visible.flatten(0, 1)[real]):
            out = encoder(masked)
        token_mask = out.token_mask & mask.visible
        positions = torch.arange(E * h * w, device=token_mask.device).expand(B, -1)
        count = token_mask.sum(1, keepdim=True).clamp_min(1).to(out.tokens.dtype)
        pooled = (out.tokens * token_mask.unsqueeze(-1)).sum(1) / count
        return EncodedModality(out._replace(token_mask=token_mask), positions, pooled, token_mask.any(1))

    def target(self, encoder: nn.Module, mb: ModalityBatch, mask: ModalityMask) -> ModalityTarget:
        images, _ = _images(mb)
        patches = self.patches(images, mask.grid[1:])  # (B, U, C*p*p)
        mean, var = patches.mean(-1, keepdim=True), patches.var(-1, keepdim=True, unbiased=False)
        return ModalityTarget((patches - mean) / torch.sqrt(var + 1e-6), (mask.hidden & mask.real).float())

    def reconstruct(self, context: FusedContext, mask: ModalityMask) -> Tensor:
        E, h, w = mask.grid
        return self.decoder.predict(context, E * h * w)

    def render(self, mb: ModalityBatch, mask: ModalityMask, prediction: Tensor, target: ModalityTarget, index: int) -> dict[str, np.ndarray] | None:
        images, _ = _images(mb)
        E, h, w = mask.grid
        p = self.patch
        patches = self.patches(images[index : index + 1, :1], (h, w))[0]  # (h*w, C*p*p), first image
        mean, std = patches.mean(-1, keepdim=True), torch.sqrt(patches.var(-1, keepdim=True, unbiased=False) + 1e-6)
        restored = prediction[index, : h * w].float() * std + mean  # pixel units, channel 0 first (unfold is channel-major)
        fold = lambda x: F.fold(x[:, : p * p].T.unsqueeze(0), (h * p, w * p), kernel_size=p, stride=p)[0, 0]
        original = fold(patches)
        holes = mask.hidden[index, : h * w].view(h, w).repeat_interleave(p, 0).repeat_interleave(p, 1)
        as_np = lambda t: t.detach().cpu().numpy()
        return {"original": as_np(original), "masked": as_np(original.masked_fill(holes, float("nan"))), "reconstructed": as_np(torch.where(holes, fold(restored), original))}
