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


def test_frozen_features_on_disk_are_shared_across_encoders_exact_and_keyed_by_what_changes_them(tmp_path, monkeypatch):
    """`mmapps.models.frozen_features`: a second run's encoder reads the first's token features (bit-equal) without
    running its backbone; another max_length or other weights miss; a trained backbone gets no store; no text on disk."""
    from types import SimpleNamespace

    from mmapps.config import CacheConfig
    from mmapps.data.cache_secret import KEY_ENV
    from mmapps.models.frozen_features import attach_frozen_feature_stores, frozen_feature_store

    monkeypatch.setenv(KEY_ENV, str(tmp_path / "key" / "cache.key"))
    cfg = SimpleNamespace(cache=CacheConfig(dir=tmp_path / "cache"))
    notes = ["sentinel-note-9931 small left pleural effusion", "no acute cardiopulmonary process"]

    first = TextTransformerEncoder(dim=8, max_length=32)
    assert attach_frozen_feature_stores(first, cfg) == 1
    reference = first._encode(notes)
    assert frozen_feature_store(first).stats.misses == 2

    second = TextTransformerEncoder(dim=8, max_length=32)  # a new run: empty memory cache
    attach_frozen_feature_stores(second, cfg)
    calls: list[int] = []
    second.backbone.register_forward_hook(lambda *_: calls.append(1))
    again = second._encode(notes)
    assert not calls and frozen_feature_store(second).stats.hits == 2
    assert torch.equal(again[0], reference[0]) and torch.equal(again[1], reference[1])

    shorter = TextTransformerEncoder(dim=8, max_length=8)
    attach_frozen_feature_stores(shorter, cfg)
    shorter._encode(notes[:1])
    assert frozen_feature_store(shorter).stats.misses == 1  # max_length is part of the key

    changed = TextTransformerEncoder(dim=8, max_length=32)
    with torch.no_grad():
        next(changed.backbone.parameters()).add_(1e-3)
    attach_frozen_feature_stores(changed, cfg)
    changed._encode(notes[:1])
    assert frozen_feature_store(changed).stats.misses == 1  # other weights: other entries

    trained = TextTransformerEncoder(dim=8, max_length=32, finetune="full")
    assert attach_frozen_feature_stores(trained, cfg) == 0 and frozen_feature_store(trained) is None

    off = SimpleNamespace(cache=CacheConfig(dir=tmp_path / "cache", frozen_features=False))
    assert attach_frozen_feature_stores(TextTransformerEncoder(dim=8, max_length=32), off) == 0

    disk = b"".join(p.read_bytes() for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert b"sentinel-note-9931" not in disk and b"pleural" not in disk
