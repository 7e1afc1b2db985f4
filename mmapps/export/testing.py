"""Small real parts for export tests (ours and plugins'): a tiny BERT-shaped text model folder.

`write_tiny_text_model` writes a Hugging Face model folder (``config.json``, safetensors weights and
the packaged MiniLM tokenizer) with a 2-layer, 16-wide BERT: the same graph as MiniLM at a
fraction of the export and run time, loadable by the ``text_transformer`` encoder's ``model`` option.
"""

from __future__ import annotations

from pathlib import Path


def write_tiny_text_model(folder: Path, hidden: int = 16, layers: int = 2, heads: int = 2, seed: int = 0) -> Path:
    """Write (once) a tiny random BERT with the MiniLM tokenizer into `folder`; returns `folder`."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from mmapps.models.encoders.text import default_text_model_path

    folder = Path(folder)
    if (folder / "config.json").is_file():
        return folder
    tokenizer = AutoTokenizer.from_pretrained(default_text_model_path(), local_files_only=True)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=2 * hidden, max_position_embeddings=128)
    BertModel(config).eval().save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder
