"""Frozen text encoder: the packaged MiniLM runs once per distinct text over many batches, partial hits included."""

from __future__ import annotations

import torch

from mmapps.data.sample import ModalityBatch
from mmapps.models.encoders.text import TextTransformerEncoder


def _batch(texts: list[str]) -> ModalityBatch:
    return ModalityBatch(texts, torch.ones(len(texts), dtype=torch.bool))


def test_backbone_runs_once_per_distinct_text_and_matches_the_uncached_output():
    torch.manual_seed(0)
    encoder = TextTransformerEncoder(dim=8, max_length=32)
    seen: list[int] = []
    encoder.backbone.register_forward_hook(lambda _m, args, kwargs, _out: seen.append(kwargs["input_ids"].shape[0]), with_kwargs=True)
    notes = ["no acute cardiopulmonary process", "small left pleural effusion", "possible right lower lobe pneumonia"]
    first = encoder(_batch([notes[0], notes[1]]))
    assert len(seen) == 2
    encoder(_batch([notes[0], notes[2], notes[2]]))  # one hit, one new text given twice
    assert len(seen) == 3
    encoder.eval()
    again = encoder(_batch([notes[1], notes[0]]))  # every text cached, in another order and mode
    assert len(seen) == 3
    torch.testing.assert_close(again.pooled, first.pooled.flip(0), atol=0, rtol=0)

    uncached = TextTransformerEncoder(dim=8, max_length=32, cache_size=0)
    uncached.proj.load_state_dict(encoder.proj.state_dict())
    plain = uncached(_batch([notes[0], notes[1]]))  # padded batch through the backbone
    torch.testing.assert_close(first.pooled, plain.pooled, atol=1e-5, rtol=0)
    assert torch.equal(first.token_mask, plain.token_mask)


def test_cache_is_bounded_and_evicts_the_least_recently_used_text():
    encoder = TextTransformerEncoder(dim=8, max_length=16, cache_size=2)
    encoder(_batch(["left effusion", "right effusion"]))
    encoder(_batch(["left effusion"]))  # now the most recent
    encoder(_batch(["cardiomegaly"]))
    assert list(encoder._cache) == ["left effusion", "cardiomegaly"]
