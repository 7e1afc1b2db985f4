"""The light per-modality decoder (mask queries attend to the fused visible tokens of every modality) and its position prior."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mmapps.models.fusions.attention import sinusoidal_positions
from mmapps.models.fusions.sdpa_layer import SdpaEncoder
from mmapps.pretrain.contract import FusedContext


class PositionPrior(nn.Module):
    """The pool's mean target at each unit position, added to a decoder's output: the decoder predicts the residual.

    Fitted once before training from the per-position mean predictor (`mmapps.pretrain.baseline.fit_statistics`
    fits every objective's ``prior``, a plugin's too), then fixed (buffers, saved with the decoders).
    With the decoder's last layer zero-initialised, the pretraining starts exactly at the trivial
    predictor, and a held-out L_m below it is what was learned from the sample itself. Positions
    beyond the fitted ones get the overall mean. Before `fit` (or for cross-entropy targets) it adds nothing.

    Args:
        width: P, target values per unit.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width
        self.register_buffer("mean", torch.zeros(0, width))  # (U0, P)
        self.register_buffer("overall", torch.zeros(width))  # (P,)

    def fit(self, mean: Tensor, overall: Tensor) -> None:
        self.mean = mean.detach().to(self.overall.device, torch.float32).clone()
        self.overall = overall.detach().to(self.overall.device, torch.float32).clone()

    def forward(self, prediction: Tensor) -> Tensor:
        """(B, U, P) -> (B, U, P) plus the mean target of each position."""
        n, U = self.mean.shape[0], prediction.shape[1]
        if n == 0:
            return prediction
        prior = self.mean[:U] if U <= n else torch.cat([self.mean, self.overall.expand(U - n, -1)])  # (U, P)
        return prediction + prior.to(prediction.dtype)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: object, **kwargs: object) -> None:
        saved = state_dict.get(prefix + "mean")
        if saved is not None and saved.shape != self.mean.shape:  # fitted elsewhere: take its number of positions
            self.mean = torch.zeros_like(saved, device=self.mean.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class UnitDecoder(nn.Module):
    """A few transformer layers over ``[context tokens ; one query per unit]`` -> per-unit predictions.

    Context tokens get a (decoder) modality embedding and the sinusoidal position of their unit;
    each query is a learned mask token plus its unit's position and this modality's embedding.
    Queries are read out, so hidden units are predicted from every modality's visible tokens; the
    output is a residual over the pool's per-position mean target (`PositionPrior`, ``prior``).

    Args:
        context_dim: width of the fused tokens.
        dim: decoder width.
        out_dim: P, target values per unit.
        modalities: all modality names (sorted) of the context.
        modality: the one this decoder reconstructs.
        layers, heads: transformer size.
    """

    def __init__(self, context_dim: int, dim: int, out_dim: int, modalities: tuple[str, ...], modality: str, layers: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.index = list(modalities).index(modality)
        self.in_proj = nn.Linear(context_dim, dim)
        self.modality_embedding = nn.Parameter(torch.randn(len(modalities), dim) * 0.02)
        self.mask_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        heads = heads if dim % heads == 0 else 1
        self.transformer = SdpaEncoder(layers, dim, heads, ffn_dim=2 * dim, dropout=0.0)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, out_dim)
        nn.init.zeros_(self.head.weight)  # start at the trivial predictor: the prior alone
        nn.init.zeros_(self.head.bias)
        self.prior = PositionPrior(out_dim)
        self.dim = dim

    def forward(self, context: FusedContext, units: int) -> Tensor:
        """Returns the hidden states of the `units` queries (B, U, dim); `predict` maps them to targets."""
        B, N = context.keep.shape
        table = sinusoidal_positions(max(units, context.span, 1), self.dim, context.tokens.device)  # (span, dim)
        pos = table[context.positions.clamp_min(0)] * (context.positions >= 0).unsqueeze(-1)  # (B, N, dim)
        ctx = self.in_proj(context.tokens) + self.modality_embedding[context.modality] + pos  # (B, N, dim)
        queries = self.mask_token + self.modality_embedding[self.index] + table[:units]  # (1, U, dim)
        x = torch.cat([ctx, queries.expand(B, -1, -1).to(ctx.dtype)], dim=1)  # (B, N + U, dim)
        keep = torch.cat([context.keep, torch.ones(B, units, dtype=torch.bool, device=x.device)], dim=1)
        out = self.transformer(x, keep.view(B, 1, 1, -1))
        return self.norm(out[:, N:])  # (B, U, dim)

    def predict(self, context: FusedContext, units: int) -> Tensor:
        return self.prior(self.head(self(context, units)))  # (B, U, P)
