"""Driving pretraining (``Domain.pretrain``): masked pillar blocks -> BEV occupancy, masked camera patches -> pixels.

The detector is not an encoders -> token-fusion model: LiDAR points become pillars, the camera
enters *spatially* (painted onto points, or sampled per BEV cell), and the BEV backbone mixes
everything. So the scene is encoded by the LiDAR objective as the detector does it, with
hidden content removed before the first layer that mixes it:

- LiDAR (Voxel-MAE / Occupancy-MAE): range-aware blocks of pillars are hidden *before* the
  pillar feature net and its scatter (`pretrain_masking`); hidden pillars' points get no camera
  painting either, as they never reach the network. The backbone's BEV cells are the LiDAR
  tokens; a light decoder reconstructs z-bin occupancy and point counts of *every* in-range cell
  (empty cells are the negatives), a fixed function of all the frame's points.
- camera: SparK-style masked input patches (`pretrain_camera`), ratio ~0.6; the masked feature
  map is what painting / BEV sampling sees, and its cells are the camera tokens; the target is
  the hidden patches' normalised pixels.

The two objectives share one `DrivingScene` per step (`bind`), so the camera CNN runs once.
The token "fusion" (`SceneTokens`) only lays both modalities' tokens side by side: the mixing
happened in the backbone. ``train --init`` loads the camera CNN, pillar feature net and backbone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn
from torch.nn import functional as F

from mmapps.data.sample import ModalityBatch
from mmapps.models.types import EncoderOutput, FusionOutput
from mmapps.pretrain.contract import EncodedModality, FusedContext, MaskKeys, ModalityMask, ModalityObjective, ModalityTarget, PretrainParts
from mmapps.pretrain.decoder import PositionPrior
from mmapps.pretrain.masking import draw_units

from mmapps_domains.driving.camera_fusion import conv_bn
from mmapps_domains.driving.pretrain_camera import CameraDecoder, masked_image_features, patch_values, pixels_to_patches
from mmapps_domains.driving.pretrain_masking import camera_view, draw_pillar_mask, occupancy_targets
from mmapps_domains.driving.preprocess import pillarise


class DrivingPretrainOptions(BaseModel):
    """``pretrain.options`` of the driving domain (validated; unknown keys refused)."""

    model_config = ConfigDict(extra="forbid")
    block_m: float = Field(1.28, gt=0, description="edge (m) of a pillar block near the sensor")
    block_growth_m: float = Field(20.0, gt=0, description="the block edge doubles every block_growth_m metres of range")
    z_bins: int = Field(8, ge=1, description="height bins of the occupancy target over the point range's z extent")
    count_weight: float = Field(1.0, ge=0, description="weight of the point-count term (log1p counts, smooth L1) beside occupancy BCE")
    camera_patch: int = Field(16, ge=4, description="camera mask unit (pixels, a multiple of 4)")
    fov_only: bool = Field(True, description="with data.options.fov_crop: the occupancy loss covers cells the camera sees (others never hold points)")


class DrivingScene:
    """The step's batch and what both objectives need of it (set by `bind`, reset every step)."""

    def __init__(self, detector: nn.Module, options: DrivingPretrainOptions) -> None:
        self.detector_ref = [detector]  # a list: the detector is the model's, not this object's
        self.options = options
        self.batch: Any = None
        self.camera_mask: ModalityMask | None = None
        self.camera_features: Tensor | None = None

    @property
    def detector(self) -> nn.Module:
        return self.detector_ref[0]

    def bind(self, batch: Any) -> None:
        if batch is not self.batch:
            self.batch, self.camera_mask, self.camera_features = batch, None, None

    def matrices(self, device: torch.device) -> Tensor:
        return torch.tensor([m["lidar_to_image"] for m in self.batch.meta], dtype=torch.float32, device=device)  # (B, 3, 4)

    def camera(self) -> tuple[Tensor | None, Tensor]:
        """The masked camera feature map (B, C, H/4, W/4) (None without a camera in the batch) and presence (B,)."""
        det, cam = self.detector, self.batch.inputs.get("camera")
        B = len(self.batch)
        if det.image_net is None or cam is None or cam.data is None or self.camera_mask is None:
            return None, torch.zeros(B, dtype=torch.bool)
        mask = self.camera_mask
        present = cam.present & ~mask.whole
        if self.camera_features is None:
            visible = (mask.visible & present.unsqueeze(1)).view(B, *mask.grid)  # (B, gh, gw)
            self.camera_features = masked_image_features(det.image_net, cam.data, visible)
        return self.camera_features, present


def scene_pseudo_image(scene: DrivingScene, points: Tensor, batch_index: Tensor) -> Tensor:
    """The detector's backbone input (B, C, ny, nx) from the visible points and the masked camera."""
    det = scene.detector
    pillars = pillarise(points, batch_index, det.point_range, det.options.pillar_size)
    features, present = scene.camera()
    return det.pseudo_image(pillars.features, pillars.pillar_of_point, pillars.coords, scene.matrices(points.device), features, present.to(points.device))


def _tokens_of(context: FusedContext, modality: str, units: int, channels: int) -> Tensor:
    """This modality's fused tokens scattered back to their unit positions: (B, units, channels)."""
    index = context.modalities.index(modality)
    own = context.modality == index
    tokens, positions = context.tokens[:, own, :channels], context.positions[:, own]  # (B, T, C), (B, T)
    out = tokens.new_zeros(tokens.shape[0], units, channels)
    return out.scatter(1, positions.clamp(0, units - 1).unsqueeze(-1).expand_as(tokens), tokens)


class LidarOccupancyObjective(ModalityObjective):
    """Range-aware pillar blocks hidden before the pillar net; occupancy + counts of every in-range cell."""

    unit = "range-aware block of pillars"
    target_name = "z-bin occupancy and log point count of every in-range BEV cell"
    loss_kind = "bce"

    def __init__(self, scene: DrivingScene, options: DrivingPretrainOptions, ratio: float, fov: bool) -> None:
        super().__init__()
        det = scene.detector
        self.scene, self.options, self.fov, self.ratio = scene, options, fov, ratio
        c = det.backbone.out_channels
        self.decoder = nn.Sequential(nn.ConvTranspose2d(c, c, 2, 2, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                                     conv_bn(c, c), nn.Conv2d(c, options.z_bins + 1, 1))
        self.channels = c

    def bind(self, batch: Any) -> None:
        self.scene.bind(batch)

    def fit_statistics(self, batches: list[ModalityBatch]) -> None:
        """Before training: the decoder's output biases at the pool's mean occupancy (as logits) and mean log count,
        so it starts at the trivial predictor, not at p = 0.5 on a mostly empty grid (the prior of RetinaNet's focal loss)."""
        det, Z = self.scene.detector, self.options.z_bins
        occupancy, counts = [], []
        for mb in batches:
            if mb.data is None:
                continue
            points, batch_index = self._points(mb)
            t = occupancy_targets(points, batch_index, mb.present.shape[0], det.point_range, det.options.pillar_size, Z)
            occupancy.append(t.occupancy[mb.present].mean((0, 2, 3)))
            counts.append(t.log_count[mb.present].mean())
        if occupancy:
            p = torch.stack(occupancy).mean(0).clamp(1e-4, 1 - 1e-4)  # (Z,)
            with torch.no_grad():
                self.decoder[-1].bias[:Z] = torch.log(p / (1 - p)).to(self.decoder[-1].bias)
                self.decoder[-1].bias[Z] = torch.stack(counts).mean().to(self.decoder[-1].bias)

    def _points(self, mb: ModalityBatch) -> tuple[Tensor, Tensor]:
        counts = mb.offsets[1:] - mb.offsets[:-1]
        return mb.data, torch.repeat_interleave(torch.arange(counts.shape[0], device=mb.data.device), counts.to(mb.data.device))

    def draw(self, mb: ModalityBatch, keys: MaskKeys, stream: int) -> ModalityMask:
        det, o = self.scene.detector, self.options
        points, batch_index = self._points(mb)
        B, (ny, nx) = mb.present.shape[0], det.grid
        pillars = pillarise(points, batch_index, det.point_range, det.options.pillar_size)
        hidden_pillar = draw_pillar_mask(pillars.coords, keys, stream, det.grid, det.point_range, det.options.pillar_size, self.ratio, o.block_m, o.block_growth_m)
        hidden = torch.zeros(B * ny * nx, dtype=torch.bool, device=points.device)
        c = pillars.coords[hidden_pillar]
        hidden[(c[:, 0] * ny + c[:, 1]) * nx + c[:, 2]] = True
        view = camera_view(self.scene.matrices(points.device), det.image_size, det.grid, det.point_range, det.options.pillar_size, det.options.bev_heights) if self.fov else None
        real = (torch.ones(B, ny * nx, dtype=torch.bool, device=points.device) if view is None else view.view(B, -1)) & mb.present.unsqueeze(1)
        drop_point = torch.zeros(points.shape[0], dtype=torch.bool, device=points.device)
        drop_point[pillars.point_index] = hidden_pillar[pillars.pillar_of_point]
        return ModalityMask(hidden.view(B, -1), real, torch.zeros(B, dtype=torch.bool, device=points.device), (ny, nx), {"drop_point": drop_point})

    def encode(self, encoder: nn.Module, mb: ModalityBatch, mask: ModalityMask) -> EncodedModality:
        points, batch_index = self._points(mb)
        keep = ~mask.extra["drop_point"] & ~mask.whole[batch_index]
        bev = encoder(scene_pseudo_image(self.scene, points[keep], batch_index[keep]))  # (B, D, ny/2, nx/2)
        B, _, h, w = bev.shape
        tokens = bev.flatten(2).transpose(1, 2)  # (B, h*w, D)
        token_mask = mb.present.unsqueeze(1).expand(B, h * w).clone()
        positions = torch.arange(h * w, device=bev.device).expand(B, -1)
        pooled = tokens.mean(1)
        return EncodedModality(EncoderOutput(tokens, token_mask, pooled, bev), positions, pooled, mb.present)

    def target(self, encoder: nn.Module, mb: ModalityBatch, mask: ModalityMask) -> ModalityTarget:
        det = self.scene.detector
        points, batch_index = self._points(mb)
        t = occupancy_targets(points, batch_index, mb.present.shape[0], det.point_range, det.options.pillar_size, self.options.z_bins)
        values = torch.cat([t.occupancy, t.log_count], dim=1).flatten(2).transpose(1, 2)  # (B, ny*nx, Z+1)
        return ModalityTarget(values, mask.real.float())

    def reconstruct(self, context: FusedContext, mask: ModalityMask) -> Tensor:
        ny, nx = mask.grid
        h, w = ny // 2, nx // 2
        bev = _tokens_of(context, "lidar", h * w, self.channels).transpose(1, 2).reshape(-1, self.channels, h, w)  # (B, D, h, w)
        out = self.decoder(bev).flatten(2).transpose(1, 2).float()  # (B, ny*nx, Z+1)
        Z = self.options.z_bins
        # in target space (occupancy probabilities, log counts), so that the core's per-position
        # mean predictor is scored by the same `loss`
        return torch.cat([torch.sigmoid(out[..., :Z]), out[..., Z:]], dim=-1)

    def loss(self, prediction: Tensor, target: ModalityTarget) -> Tensor:
        Z = self.options.z_bins
        weight = target.weight.to(prediction.dtype)  # (B, U)
        total = weight.sum().clamp_min(1.0)
        p, y = prediction[..., :Z].float(), target.values[..., :Z].float()
        occupancy = -(y * torch.log(p.clamp_min(1e-6)) + (1 - y) * torch.log((1 - p).clamp_min(1e-6))).mean(-1)  # BCE (autocast-safe)
        count = F.smooth_l1_loss(prediction[..., Z].float(), target.values[..., Z].float(), reduction="none")
        return ((occupancy + self.options.count_weight * count) * weight).sum() / total


    def render(self, mb: ModalityBatch, mask: ModalityMask, prediction: Tensor, target: ModalityTarget, index: int) -> dict[str, np.ndarray] | None:
        """BEV maps of sample `index`: occupied cells (any height bin), the encoder's view, the reconstruction."""
        ny, nx = mask.grid
        Z = self.options.z_bins
        occupied = target.values[index, :, :Z].amax(-1).view(ny, nx).float()
        visible = occupied.masked_fill(mask.hidden[index].view(ny, nx), float("nan"))
        predicted = prediction[index, :, :Z].amax(-1).view(ny, nx).float()
        outside = ~mask.real[index].view(ny, nx)
        as_np = lambda t: t.masked_fill(outside, float("nan")).detach().cpu().numpy()[::-1]  # noqa: E731  (far at the top)
        return {"occupied cells": as_np(occupied), "visible to the encoder": as_np(visible), "reconstructed occupancy": as_np(predicted)}


class CameraPatchObjective(ModalityObjective):
    """SparK masked camera patches; the hidden patches' normalised pixels."""

    unit = "camera patch"
    target_name = "normalised pixels of hidden camera patches"

    def __init__(self, scene: DrivingScene, options: DrivingPretrainOptions, ratio: float) -> None:
        super().__init__()
        det = scene.detector
        self.scene, self.patch, self.ratio = scene, options.camera_patch, ratio
        self.channels = det.image_net.out_channels
        self.decoder = CameraDecoder(self.channels, self.channels)
        self.prior = PositionPrior(3 * self.patch**2)  # the pool's mean normalised patch per position (fitted by the core)

    def bind(self, batch: Any) -> None:
        self.scene.bind(batch)

    def draw(self, mb: ModalityBatch, keys: MaskKeys, stream: int) -> ModalityMask:
        B, _, H, W = mb.data.shape
        grid = (H // self.patch, W // self.patch)
        real = mb.present.unsqueeze(1).expand(B, grid[0] * grid[1]).contiguous()
        mask = ModalityMask(draw_units(real, keys, stream, self.ratio), real, torch.zeros(B, dtype=torch.bool, device=real.device), grid)
        self.scene.camera_mask = mask
        return mask

    def encode(self, encoder: nn.Module, mb: ModalityBatch, mask: ModalityMask) -> EncodedModality:
        self.scene.camera_mask = mask
        features, present = self.scene.camera()
        B, _, h, w = features.shape
        visible = F.interpolate((mask.visible & present.unsqueeze(1)).view(B, 1, *mask.grid).float(), size=(h, w), mode="nearest").view(B, h * w) > 0
        tokens = features.flatten(2).transpose(1, 2)  # (B, h*w, C)
        positions = torch.arange(h * w, device=tokens.device).expand(B, -1)
        pooled = (tokens * visible.unsqueeze(-1)).sum(1) / visible.sum(1, keepdim=True).clamp_min(1)
        return EncodedModality(EncoderOutput(tokens, visible, pooled, features), positions, pooled, visible.any(1))

    def target(self, encoder: nn.Module, mb: ModalityBatch, mask: ModalityMask) -> ModalityTarget:
        values, _, _ = patch_values(mb.data, self.patch)
        # a camera hidden whole is not scored: its decoder sees camera tokens only (no LiDAR-to-image path)
        return ModalityTarget(values, (mask.hidden & mask.real & ~mask.whole.unsqueeze(1)).float())

    def reconstruct(self, context: FusedContext, mask: ModalityMask) -> Tensor:
        gh, gw = mask.grid
        h, w = gh * self.patch // 4, gw * self.patch // 4
        cells = _tokens_of(context, "camera", h * w, self.channels).transpose(1, 2).reshape(-1, self.channels, h, w)
        visible = mask.visible.view(-1, gh, gw)
        return self.prior(pixels_to_patches(self.decoder(cells, visible), self.patch))  # (B, U, 3*p*p)

    def render(self, mb: ModalityBatch, mask: ModalityMask, prediction: Tensor, target: ModalityTarget, index: int) -> dict[str, np.ndarray] | None:
        """Channel 0 of image `index`: original, hidden patches blanked, hidden patches reconstructed (in pixel units)."""
        gh, gw = mask.grid
        p = self.patch
        image = mb.data[index : index + 1].float()
        _, mean, var = patch_values(image, p)
        restored = prediction[index : index + 1].float() * torch.sqrt(var + 1e-6) + mean  # (1, U, 3*p*p)
        fold = lambda patches: F.fold(patches.transpose(1, 2), (gh * p, gw * p), kernel_size=p, stride=p)[0, 0]  # noqa: E731
        original = image[0, 0, : gh * p, : gw * p]
        holes = mask.hidden[index].view(gh, gw).repeat_interleave(p, 0).repeat_interleave(p, 1)
        as_np = lambda t: t.detach().cpu().numpy()  # noqa: E731
        return {"original": as_np(original), "masked": as_np(original.masked_fill(holes, float("nan"))),
                "reconstructed": as_np(torch.where(holes, fold(restored), original))}


class EncoderView(nn.Module):
    """A detector part seen as an encoder (``out_dim``, as the core expects); the part stays the detector's."""

    def __init__(self, part: nn.Module, out_dim: int) -> None:
        super().__init__()
        self.part_ref = [part]  # not a submodule: its weights are registered (and saved) under the detector
        self.out_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.part_ref[0](x)


class SceneTokens(nn.Module):
    """The pretraining "fusion": both modalities' tokens side by side, zero-padded to one width.

    The detector fuses spatially inside the LiDAR encoding (painting / BEV sampling, then the BEV
    backbone), so there is nothing left to mix here; sorted modality order, as the core expects.
    """

    def __init__(self, widths: dict[str, int]) -> None:
        super().__init__()
        self.modalities = sorted(widths)
        self.out_dim = max(widths.values())

    def forward(self, features: dict[str, EncoderOutput], present: dict[str, Tensor]) -> FusionOutput:
        tokens = [F.pad(features[m].tokens, (0, self.out_dim - features[m].tokens.shape[-1])) for m in self.modalities]
        masks = [features[m].token_mask & present[m].unsqueeze(1) for m in self.modalities]
        lidar = features["lidar"].pooled if "lidar" in features else features[self.modalities[0]].pooled
        return FusionOutput(F.pad(lidar, (0, self.out_dim - lidar.shape[-1])), torch.cat(tokens, 1), torch.cat(masks, 1))


def pretrain(cfg: Any, domain: Any, model: nn.Module) -> PretrainParts:
    """``Domain.pretrain``: the LiDAR (+ camera) objectives of the detector; see the module docstring."""
    from mmapps.config import validate_options
    from mmapps.errors import ConfigError

    options = validate_options(DrivingPretrainOptions, dict(cfg.pretrain.options), "pretrain.options")
    scene = DrivingScene(model, options)
    fov = options.fov_only and bool(cfg.data.options.get("fov_crop", True))
    ratio = cfg.pretrain.mask_ratio
    objectives: dict[str, ModalityObjective] = {"lidar": LidarOccupancyObjective(scene, options, ratio.get("lidar", 0.7), fov)}
    encoders: dict[str, nn.Module] = {"lidar": EncoderView(model.backbone, model.backbone.out_channels)}
    widths = {"lidar": model.backbone.out_channels}
    transferred = ["pfn", "backbone"]
    if model.image_net is not None:
        h, w = model.image_size
        if h % options.camera_patch or w % options.camera_patch or options.camera_patch % 4:
            raise ConfigError(f"pretrain.options.camera_patch {options.camera_patch}: must be a multiple of 4 dividing the model image size "
                              f"data.options.image_size {list(model.image_size)}; choose e.g. 16")
        objectives["camera"] = CameraPatchObjective(scene, options, ratio.get("camera", 0.6))
        encoders["camera"] = EncoderView(model.image_net, model.image_net.out_channels)
        widths["camera"] = model.image_net.out_channels
        transferred.insert(0, "image_net")
    return PretrainParts(encoders=encoders, fusion=SceneTokens(widths), objectives=objectives, transferred=tuple(transferred))
