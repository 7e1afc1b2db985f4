"""Low-rank multimodal fusion (LMF, Liu et al. 2018): the outer-product tensor fusion in low rank."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmapps.models.types import EncoderOutput, FusionOutput
from mmapps.registry import FUSIONS


@FUSIONS.register("lmf")
class LowRankFusion(nn.Module):
    """``out = sum_r w_r * prod_m ([x_m, 1] W_m^r) + b``.

    An absent modality's factor is replaced by ones, the identity of the product, so it
    contributes nothing (a zero vector would instead zero the whole product).

    Args:
        modality_to_dim: input width per modality.
        dim: output width.
        rank: number of rank-1 factors.
    """

    level = "features"

    def __init__(self, modality_to_dim: dict[str, int], dim: int, rank: int = 4) -> None:
        super().__init__()
        self.modalities = sorted(modality_to_dim)
        self.factors = nn.ParameterDict(
            {m: nn.Parameter(torch.randn(rank, modality_to_dim[m] + 1, dim) * (modality_to_dim[m] + 1) ** -0.5) for m in self.modalities}
        )
        self.rank_weights = nn.Parameter(torch.full((rank,), 1.0 / rank))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.out_dim = dim

    def forward(self, features: dict[str, EncoderOutput], present: dict[str, Tensor]) -> FusionOutput:
        product = None
        for m in self.modalities:
            x = features[m].pooled
            x1 = torch.cat([x, torch.ones_like(x[:, :1])], dim=-1)  # (B, d_m + 1)
            factor = torch.einsum("bi,rid->brd", x1, self.factors[m].to(x.dtype))  # (B, R, D)
            keep = present[m].view(-1, 1, 1)
            factor = torch.where(keep, factor, torch.ones_like(factor))
            product = factor if product is None else product * factor
        fused = torch.einsum("brd,r->bd", product, self.rank_weights.to(product.dtype)) + self.bias  # (B, D)
        return FusionOutput(fused)
