"""Mask draws: which units of a sample are hidden, from the sample's own generator (seed, id, epoch)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from mmapps.pretrain.contract import MaskKeys


def hidden_count(n: int, ratio: float) -> int:
    """Units hidden out of `n` real ones: round(ratio * n), at least one visible when n > 1, none when n <= 1."""
    if n <= 1:
        return 0
    return min(int(math.floor(ratio * n + 0.5)), n - 1)


def draw_units(real: Tensor, keys: MaskKeys, stream: int, ratio: float, block: int = 1) -> Tensor:
    """(B, U) hidden mask: per sample, `hidden_count` of its real units, in contiguous blocks of `block`.

    Blocks are drawn in a random order until the count is reached; the last block is cut to hit
    the count exactly, so every sample hides exactly round(ratio * n) units.
    """
    B, U = real.shape
    hidden = np.zeros((B, U), dtype=bool)
    real_np = real.detach().cpu().numpy()
    for b in range(B):
        index = np.flatnonzero(real_np[b])
        k = hidden_count(len(index), ratio)
        if k == 0:
            continue
        rng = keys.rng(b, stream)
        if block <= 1:
            hidden[b, index[rng.permutation(len(index))[:k]]] = True
            continue
        starts = np.arange(0, len(index), block)
        chosen: list[int] = []
        for s in starts[rng.permutation(len(starts))]:
            chosen.extend(index[s : s + block].tolist())
            if len(chosen) >= k:
                break
        hidden[b, chosen[:k]] = True
    return torch.from_numpy(hidden).to(real.device)


def draw_samples(present: Tensor, keys: MaskKeys, stream: int, probability: float) -> Tensor:
    """(B,) bool: each present sample chosen with `probability` (its own generator)."""
    chosen = [bool(present[b]) and keys.rng(b, stream).random() < probability for b in range(present.shape[0])]
    return torch.tensor(chosen, dtype=torch.bool, device=present.device)


def upsample_units(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """(N, h, w) unit mask -> (N, 1, H, W) float at the given spatial size (nearest)."""
    return torch.nn.functional.interpolate(mask.unsqueeze(1).float(), size=size, mode="nearest")
