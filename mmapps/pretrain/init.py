"""``train --init``: start a model from a pretraining run (or any mmapps checkpoint of the same domain), by name.

What is loaded, what is new and what was refused are printed; a tensor whose shape differs, or a
checkpoint tensor this model has no place for, stops the run naming them, unless the user asks
for an explicit partial init (``--init-partial``: those tensors are skipped and listed, e.g. a
pretraining with attention fusion fine-tuned with concat fusion loads the encoders only).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from mmapps.errors import CheckpointError

ONNX_SUFFIXES = (".onnx", ".ort")


@dataclass
class InitReport:
    """What ``train --init`` did: tensors loaded (by top-level part), new in this model, skipped."""

    source: Path
    loaded: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def format(self) -> str:
        lines = [f"init from {self.source}: loaded {len(self.loaded)} tensors ({_by_part(self.loaded)})"]
        lines.append(f"  new (not in the checkpoint, initialised fresh): {len(self.new)} tensors ({_by_part(self.new) or 'none'})")
        if self.skipped:
            lines.append(f"  skipped (--init-partial): {len(self.skipped)} tensors ({', '.join(self.skipped[:6])}{', ...' if len(self.skipped) > 6 else ''})")
        return "\n".join(lines)


def _by_part(keys: list[str]) -> str:
    counts: dict[str, int] = {}
    for key in keys:
        parts = key.split(".")
        part = ".".join(parts[:2]) if parts[0] in ("encoders", "heads") and len(parts) > 2 else parts[0]
        counts[part] = counts.get(part, 0) + 1
    return ", ".join(f"{part} {n}" for part, n in sorted(counts.items()))


def resolve_init_path(source: Path) -> Path:
    """The checkpoint file `source` names: a pretraining run folder, its ``checkpoints`` folder, or a file.

    Raises:
        CheckpointError: an ONNX file, a folder without a pretraining checkpoint, or not a safetensors file.
    """
    source = Path(source)
    if source.suffix.lower() in ONNX_SUFFIXES:
        raise CheckpointError(
            f"--init {source}: an ONNX file is an exported inference graph, not trainable weights; give the pretraining run folder "
            "(or its checkpoints/pretrained.safetensors) written by `mmapps <domain> pretrain`, or a .safetensors checkpoint of `train`"
        )
    if source.is_dir():
        for candidate in (source / "checkpoints" / "pretrained.safetensors", source / "pretrained.safetensors", source / "checkpoints" / "best.safetensors"):
            if candidate.is_file():
                return candidate
        raise CheckpointError(f"--init {source}: a folder without checkpoints/pretrained.safetensors or checkpoints/best.safetensors; give a run folder of `mmapps <domain> pretrain` or `train`, or the .safetensors file itself")
    if not source.exists():
        raise CheckpointError(f"--init {source}: not found; give a pretraining run folder or a .safetensors checkpoint")
    if source.suffix != ".safetensors":
        raise CheckpointError(f"--init {source}: not a checkpoint (found a {source.suffix or 'suffix-less'} file; accepted: a .safetensors file written by mmapps pretrain or train, or its run folder)")
    return source


def read_init_state(source: Path, domain: str) -> tuple[Path, dict[str, torch.Tensor], dict]:
    """(file, state under the domain model's names, checkpoint extra). Refuses another domain's checkpoint."""
    from mmapps.train import checkpoint as ckpt

    path = resolve_init_path(source)
    state, metadata = ckpt.read_inference_checkpoint(path)
    values = ckpt.checkpoint_config(metadata, path, None)
    if values.get("domain") != domain:
        raise CheckpointError(
            f"--init {source}: this checkpoint was {'pretrained' if 'pretrain' in metadata.get('extra', '') else 'trained'} by the {values.get('domain')} domain, "
            f"not {domain}; its encoders were built for that domain's modalities. Pretrain with `mmapps {domain} pretrain` and give that run"
        )
    extra = json.loads(metadata.get("extra") or "{}")
    # pretrained.safetensors is already under the domain model's names (the driving detector has its own `backbone`)
    if extra.get("kind") != "pretrain" and any(k.startswith("backbone.") for k in state):  # the pretraining trainer's own best/last.safetensors: keep the domain model's part
        state = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    ckpt.check_finite_weights(state, path)
    return path, state, extra


def load_init(model: nn.Module, source: Path, domain: str, partial: bool = False) -> InitReport:
    """Copy the checkpoint's tensors into `model` by name.

    Raises:
        CheckpointError: wrong-shape tensors, or checkpoint tensors this model lacks, without `partial`;
            a checkpoint with no tensor in common with the model.
    """
    path, state, _ = read_init_state(source, domain)
    target = model.state_dict()
    wrong = [f"{k} (checkpoint {tuple(v.shape)}, model {tuple(target[k].shape)})" for k, v in state.items() if k in target and tuple(v.shape) != tuple(target[k].shape)]
    unknown = [k for k in state if k not in target]
    report = InitReport(path)
    if (wrong or unknown) and not partial:
        named = "; ".join(wrong[:4] + unknown[: max(0, 4 - len(wrong))])
        raise CheckpointError(
            f"--init {source}: {len(wrong)} tensor(s) of another shape and {len(unknown)} the model has no place for, e.g. {named}. "
            "The pretraining used another model width, encoder or fusion than this run; match them (model.dim, model.encoders, model.fusion) "
            "or pass --init-partial to load only the tensors that fit and list the rest"
        )
    fits = {k: v for k, v in state.items() if k in target and tuple(v.shape) == tuple(target[k].shape)}
    if not fits:
        raise CheckpointError(f"--init {source}: no tensor of it fits this model (names such as {list(state)[:3]}); it belongs to another model")
    report.skipped = sorted([k for k in state if k not in fits])
    report.loaded = sorted(fits)
    report.new = sorted(k for k in target if k not in fits)
    merged = {**target, **{k: v.to(target[k].dtype) for k, v in fits.items()}}
    model.load_state_dict(merged)
    return report
