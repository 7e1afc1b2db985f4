"""Text objectives for `text_transformer`: a frozen encoder hides whole notes, a trained one masks tokens.

- Frozen (the default): no within-note masking (a frozen transformer's context would carry a
  masked word into its neighbours, and nothing here could learn from it). The note is hidden
  whole for a share of samples and its target, reconstructed from the other modalities, is a
  fixed function of the frozen encoder's features (``pretrain.frozen_text_target``): its token
  features, layer-normalised, one unit per token (``tokens``), or its mean-pooled sentence
  embedding, layer-normalised, one unit per note (``sentence``: what the note says; per-token
  features are mostly which word falls where, which no other modality can tell). The
  contrastive term aligns the note's pooled embedding with theirs.
- Trained (``finetune`` full or last_n): BERT-style masked-token prediction, ``[MASK]`` at the
  input, the decoder's output tied to the word embeddings (the packaged sentence checkpoint has
  no MLM head), cross-entropy on the masked tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmapps.data.sample import ModalityBatch
from mmapps.models.pooling import masked_mean
from mmapps.pretrain.contract import (
    EncodedModality,
    FusedContext,
    MaskKeys,
    ModalityMask,
    ModalityObjective,
    ModalityTarget,
)
from mmapps.pretrain.decoder import UnitDecoder
from mmapps.pretrain.masking import draw_samples, draw_units


def _texts(mb: ModalityBatch) -> list[str]:
    return [t if isinstance(t, str) else " ".join(t) for t in mb.data]


class FrozenNoteObjective(ModalityObjective):
    """Whole-note hiding with frozen token features as the target (see the module docstring)."""

    unit = "whole note"

    def __init__(self, encoder: nn.Module, context_dim: int, modalities: tuple[str, ...], modality: str, ratio: float, decoder_dim: int, layers: int, heads: int,
                 target: str = "tokens") -> None:
        super().__init__()
        self.ratio = ratio
        self.sentence = target == "sentence"
        self.target_name = "frozen encoder sentence embedding (mean-pooled)" if self.sentence else "frozen encoder token features"
        self._encoder_ref = [encoder]  # not a submodule: the encoder belongs to the model
        self.width = encoder.backbone.config.hidden_size
        self.decoder = UnitDecoder(context_dim, decoder_dim, self.width, modalities, modality, layers, heads)

    def draw(self, mb: ModalityBatch, keys: MaskKeys, stream: int) -> ModalityMask:
        features, token_mask = mb_features(self, mb)
        token_mask = token_mask.to(mb.present.device)
        real = token_mask & mb.present.unsqueeze(1)  # (B, L)
        whole = draw_samples(mb.present, keys, stream, self.ratio)
        if self.sentence:  # one unit per note: real where the note is
            real = real.any(1, keepdim=True)
        return ModalityMask(whole.unsqueeze(1) & real, real, whole, (real.shape[1],), {"features": features, "token_mask": token_mask})

    def encode(self, encoder: nn.Module, mb: ModalityBatch, mask: ModalityMask) -> EncodedModality:
        out = encoder(mb)  # frozen backbone: cached per text; only the projection trains
        full = out.token_mask
        token_mask = full & ~mask.whole.unsqueeze(1)
        B, L = token_mask.shape
        # token positions index the decoders' position table, sized by the mask grids: a sentence target's grid is one unit
        positions = torch.arange(L, device=token_mask.device).expand(B, -1) if not self.sentence else torch.full((B, L), -1, dtype=torch.long, device=token_mask.device)
        return EncodedModality(out._replace(token_mask=token_mask), positions, masked_mean(out.tokens, full), full.any(1))

    def target(self, encoder: nn.Module, mb: ModalityBatch, mask: ModalityMask) -> ModalityTarget:
        features = mask.extra["features"].to(mask.real.device).float()  # (B, L, H)
        if self.sentence:
            features = masked_mean(features, mask.extra["token_mask"].to(features.device)).unsqueeze(1)  # (B, 1, H)
        values = F.layer_norm(features, (features.shape[-1],))
        return ModalityTarget(values, (mask.hidden & mask.real).float())

    def reconstruct(self, context: FusedContext, mask: ModalityMask) -> Tensor:
        return self.decoder.predict(context, mask.grid[0])


def mb_features(objective: nn.Module, mb: ModalityBatch) -> tuple[Tensor, Tensor]:
    """The frozen encoder's (B, L, H) token features and (B, L) mask of a batch (its per-text cache)."""
    encoder = objective._encoder_ref[0]
    return encoder._encode(_texts(mb))


class MaskedTokenObjective(ModalityObjective):
    """Masked-token prediction with the output tied to the encoder's word embeddings."""

    unit = "word piece"
    target_name = "masked token ids (tied word embeddings)"
    loss_kind = "ce"

    def __init__(self, encoder: nn.Module, context_dim: int, modalities: tuple[str, ...], modality: str, ratio: float, decoder_dim: int, layers: int, heads: int) -> None:
        super().__init__()
        self.ratio = ratio
        self._encoder_ref = [encoder]
        if encoder.tokenizer.mask_token_id is None:
            raise ValueError(f"pretrain: the text model of modality {modality!r} has no [MASK] token; keep its encoder frozen (model.encoders.{modality}.options.finetune=frozen)")
        self.decoder = UnitDecoder(context_dim, decoder_dim, encoder.backbone.config.hidden_size, modalities, modality, layers, heads)

    def draw(self, mb: ModalityBatch, keys: MaskKeys, stream: int) -> ModalityMask:
        encoder = self._encoder_ref[0]
        enc = encoder.tokenizer(_texts(mb), padding=True, truncation=True, max_length=encoder.max_length, return_tensors="pt", return_special_tokens_mask=True)
        device = mb.present.device
        attention = enc["attention_mask"].bool().to(device) & mb.present.unsqueeze(1)
        real = attention & ~enc["special_tokens_mask"].bool().to(device)
        hidden = draw_units(real, keys, stream, self.ratio)
        ids = enc["input_ids"].to(device)
        masked = ids.masked_fill(hidden, encoder.tokenizer.mask_token_id)
        B = ids.shape[0]
        return ModalityMask(hidden, real, torch.zeros(B, dtype=torch.bool, device=device), (ids.shape[1],), {"ids": ids, "masked_ids": masked, "attention": attention})

    def encode(self, encoder: nn.Module, mb: ModalityBatch, mask: ModalityMask) -> EncodedModality:
        device = encoder.proj.weight.device
        hidden = encoder.backbone(input_ids=mask.extra["masked_ids"].to(device), attention_mask=mask.extra["attention"].long().to(device)).last_hidden_state
        tokens = encoder.proj(hidden)  # (B, L, D): [MASK] at hidden positions, nothing of their words
        token_mask = mask.extra["attention"]
        B, L = token_mask.shape
        from mmapps.models.types import EncoderOutput

        pooled = masked_mean(tokens, token_mask)
        positions = torch.arange(L, device=device).expand(B, -1)
        return EncodedModality(EncoderOutput(tokens, token_mask, pooled), positions, pooled, token_mask.any(1))

    def target(self, encoder: nn.Module, mb: ModalityBatch, mask: ModalityMask) -> ModalityTarget:
        return ModalityTarget(mask.extra["ids"].unsqueeze(-1), mask.hidden.float())

    def reconstruct(self, context: FusedContext, mask: ModalityMask) -> Tensor:
        embeddings = self._encoder_ref[0].backbone.get_input_embeddings().weight  # (V, H), tied
        return self.decoder.predict(context, mask.grid[0]) @ embeddings.T  # (B, L, V) logits

    def loss(self, prediction: Tensor, target: ModalityTarget) -> Tensor:
        weight = target.weight.flatten().to(prediction.dtype)
        per_token = F.cross_entropy(prediction.flatten(0, 1).float(), target.values.flatten().long(), reduction="none")  # (B*L,)
        return (per_token * weight).sum() / weight.sum().clamp_min(1.0)
