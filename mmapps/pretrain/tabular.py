"""Masked columns for `tabular_mlp`: hidden columns enter as missing (NaN, flagged by the encoder).

The target is each hidden column's value standardised by the pool's column mean and standard
deviation (estimated before training, `fit_statistics`, and saved with the run); columns missing
in the data are neither hidden nor scored.
"""

from __future__ import annotations

import torch
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
from mmapps.pretrain.masking import draw_units


class MaskedColumnObjective(ModalityObjective):
    """Hide a share of each row's observed columns; reconstruct their standardised values."""

    unit = "column"
    target_name = "standardised column values"

    def __init__(self, columns: int, context_dim: int, modalities: tuple[str, ...], modality: str, ratio: float, decoder_dim: int, layers: int, heads: int) -> None:
        super().__init__()
        self.ratio = ratio
        self.register_buffer("column_mean", torch.zeros(columns))
        self.register_buffer("column_std", torch.ones(columns))
        self.decoder = UnitDecoder(context_dim, decoder_dim, 1, modalities, modality, layers, heads)

    def fit_statistics(self, batches: list[ModalityBatch]) -> None:
        """Column mean and standard deviation over the observed values of the pool's first batches."""
        rows = torch.cat([mb.data.float()[mb.present] for mb in batches if mb.data is not None]) if batches else torch.zeros(0, self.column_mean.numel())
        if rows.shape[0] == 0:
            return
        observed = ~torch.isnan(rows)
        count = observed.sum(0).clamp_min(1)
        mean = torch.nan_to_num(rows).sum(0) / count
        var = ((torch.nan_to_num(rows) - mean) ** 2 * observed).sum(0) / count
        self.column_mean.copy_(mean)
        self.column_std.copy_(torch.sqrt(var).clamp_min(1e-6))

    def draw(self, mb: ModalityBatch, keys: MaskKeys, stream: int) -> ModalityMask:
        real = ~torch.isnan(mb.data.float()) & mb.present.unsqueeze(1)  # (B, F)
        hidden = draw_units(real, keys, stream, self.ratio)
        return ModalityMask(hidden, real, torch.zeros(real.shape[0], dtype=torch.bool, device=real.device), (real.shape[1],))

    def encode(self, encoder: nn.Module, mb: ModalityBatch, mask: ModalityMask) -> EncodedModality:
        data = mb.data.float().masked_fill(mask.hidden, float("nan"))  # the encoder's own "missing" path
        out = encoder(ModalityBatch(data, mb.present, mb.mask, mb.offsets))
        B, T = out.token_mask.shape
        return EncodedModality(out, torch.full((B, T), -1, device=out.token_mask.device), out.pooled, out.token_mask.any(1))

    def target(self, encoder: nn.Module, mb: ModalityBatch, mask: ModalityMask) -> ModalityTarget:
        values = (torch.nan_to_num(mb.data.float()) - self.column_mean) / self.column_std  # (B, F)
        return ModalityTarget(values.unsqueeze(-1), (mask.hidden & mask.real).float())

    def reconstruct(self, context: FusedContext, mask: ModalityMask) -> Tensor:
        return self.decoder.predict(context, mask.grid[0])
