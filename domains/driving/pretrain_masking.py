"""Range-aware pillar-block masks and the BEV occupancy targets of driving pretraining.

Masking (Voxel-MAE / Occupancy-MAE, applied before the pillar scatter): the BEV grid is cut into
square blocks whose edge grows with range (a LiDAR's points thin out with distance, so a fixed
block would hide a near object whole and a far one not at all), and a share ``ratio`` of each
frame's non-empty blocks is hidden: their points never reach the pillar feature net, nor the
camera painting. Draws are a pure function of (seed, sample id, epoch).

Targets (fixed functions of the frame's points, never of the network): for every in-range BEV
cell, the occupancy of ``z_bins`` height bins and the point count (as ``log1p``). Empty cells
are the negatives, so the loss covers every in-range cell, hidden or not.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import Tensor

from mmapps.pretrain.contract import MaskKeys
from mmapps.pretrain.masking import hidden_count


def block_edges(coords: Tensor, point_range: Sequence[float], pillar_size: float, block_m: float, growth_m: float) -> Tensor:
    """Block edge in cells (Q,) for pillars at grid `coords` (Q, 3): ``block_m`` near the sensor,
    doubling every ``growth_m`` metres of range (powers of two, so blocks of a band tile the grid)."""
    x = (coords[:, 2].double() + 0.5) * pillar_size + point_range[0]
    y = (coords[:, 1].double() + 0.5) * pillar_size + point_range[1]
    band = torch.floor(torch.sqrt(x * x + y * y) / growth_m).clamp(0, 8).long()
    base = max(1, int(round(block_m / pillar_size)))
    return base * (2 ** band)


def block_ids(coords: Tensor, grid: tuple[int, int], edges: Tensor) -> Tensor:
    """(Q,) block key of each pillar: (sample, edge, block row, block column) packed in one int64."""
    ny, nx = grid
    by, bx = coords[:, 1] // edges, coords[:, 2] // edges
    band = torch.log2(edges.double()).round().long()
    return ((coords[:, 0] * 16 + band) * (ny + 1) + by) * (nx + 1) + bx


def draw_pillar_mask(coords: Tensor, keys: MaskKeys, stream: int, grid: tuple[int, int], point_range: Sequence[float],
                     pillar_size: float, ratio: float, block_m: float, growth_m: float) -> Tensor:
    """(Q,) bool, True for pillars hidden from the encoder.

    Per sample, ``round(ratio * n)`` of its n non-empty blocks are hidden (`hidden_count`: at least
    one block stays visible), chosen by scores drawn in sorted block order from the sample's own generator
    (``keys.generator(b, stream)``: a pure function of seed, sample id and epoch).
    """
    hidden = torch.zeros(coords.shape[0], dtype=torch.bool, device=coords.device)
    if ratio <= 0 or coords.shape[0] == 0:
        return hidden
    blocks = block_ids(coords, grid, block_edges(coords, point_range, pillar_size, block_m, growth_m))
    unique, inverse = torch.unique(blocks, return_inverse=True)  # sorted: the draw order is fixed
    block_sample = coords[:, 0].new_zeros(unique.shape[0]).scatter_(0, inverse, coords[:, 0])
    block_hidden = torch.zeros(unique.shape[0], dtype=torch.bool, device=coords.device)
    for b in range(len(keys.sample_ids)):
        rows = torch.nonzero(block_sample == b).squeeze(1)
        n = rows.numel()
        k = hidden_count(n, ratio)
        if k == 0:
            continue
        scores = torch.rand(n, generator=keys.generator(b, stream))
        block_hidden[rows[torch.argsort(scores)[:k].to(rows.device)]] = True
    return block_hidden[inverse]


class OccupancyTargets(NamedTuple):
    """BEV reconstruction targets of a batch.

    Attributes:
        occupancy: (B, Z, ny, nx) 1 where a height bin of a cell holds a point, else 0.
        log_count: (B, 1, ny, nx) log1p of the cell's point count.
        in_range: (B, ny, nx) bool, the cells the loss covers (inside the grid and, with
            ``fov``, seen by the camera at one of the given heights).
    """

    occupancy: Tensor
    log_count: Tensor
    in_range: Tensor


def occupancy_targets(points: Tensor, batch_index: Tensor, batch_size: int, point_range: Sequence[float], pillar_size: float,
                      z_bins: int, view: Tensor | None = None) -> OccupancyTargets:
    """Occupancy and counts of every cell from all points (hidden ones included).

    Args:
        points: (P, >=3) LiDAR points; batch_index: (P,) sample of each point.
        point_range: x_min, y_min, z_min, x_max, y_max, z_max; pillar_size: cell edge (m).
        z_bins: height bins over [z_min, z_max).
        view: (B, ny, nx) bool cells the sensors see, or None for the whole grid.
    """
    from mmapps_domains.driving.preprocess import grid_shape

    ny, nx = grid_shape(tuple(point_range), pillar_size)
    ix = torch.floor((points[:, 0] - point_range[0]) / pillar_size).long()
    iy = torch.floor((points[:, 1] - point_range[1]) / pillar_size).long()
    iz = torch.floor((points[:, 2] - point_range[2]) / (point_range[5] - point_range[2]) * z_bins).long()
    keep = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny) & (iz >= 0) & (iz < z_bins)
    b, ix, iy, iz = batch_index[keep].long(), ix[keep], iy[keep], iz[keep]
    cell = (b * ny + iy) * nx + ix
    occupancy = torch.zeros(batch_size * z_bins * ny * nx, device=points.device)
    occupancy[((b * z_bins + iz) * ny + iy) * nx + ix] = 1.0
    counts = torch.bincount(cell, minlength=batch_size * ny * nx).to(points.dtype)
    in_range = torch.ones(batch_size, ny, nx, dtype=torch.bool, device=points.device) if view is None else view
    return OccupancyTargets(occupancy.view(batch_size, z_bins, ny, nx), torch.log1p(counts).view(batch_size, 1, ny, nx), in_range)


def camera_view(lidar_to_image: Tensor, image_hw: tuple[int, int], grid: tuple[int, int], point_range: Sequence[float],
                pillar_size: float, heights: Sequence[float]) -> Tensor:
    """(B, ny, nx) bool: BEV cells whose centre projects into the image at one of `heights` (the field of view)."""
    from mmapps_domains.driving.camera_fusion import project

    b = lidar_to_image.shape[0]
    ny, nx = grid
    ys = (torch.arange(ny, dtype=torch.float32) + 0.5) * pillar_size + point_range[1]
    xs = (torch.arange(nx, dtype=torch.float32) + 0.5) * pillar_size + point_range[0]
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    batch_index = torch.arange(b).repeat_interleave(ny * nx).to(lidar_to_image.device)
    seen = torch.zeros(b * ny * nx, dtype=torch.bool, device=lidar_to_image.device)
    for z in heights:
        pts = torch.stack([gx.reshape(-1), gy.reshape(-1), torch.full_like(gx.reshape(-1), z)], 1).repeat(b, 1).to(lidar_to_image.device)  # (B*ny*nx, 3)
        seen |= project(pts, lidar_to_image, batch_index, image_hw)[1]
    return seen.view(b, ny, nx)
