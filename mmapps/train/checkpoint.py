"""Checkpoints that load without unpickling arbitrary objects, written atomically.

- Inference checkpoint: ``*.safetensors`` holding the weights, with the resolved config (YAML)
  and the label maps (JSON) in its metadata; enough to rebuild the model and predict.
- Resumable state: ``resume.safetensors`` (model, optimiser, schedule position, sampler position,
  early-stopping state, RNG), tensors in safetensors and the rest as JSON in its metadata
  (`mmapps.train.state_io`). Nothing here unpickles: an old pickle-based ``last.pt`` is refused.

Every write goes to ``.<name>.<random>.tmp`` beside the target, is flushed to disk, then renamed
over it: a kill leaves the previous file intact and at worst a temporary file, which
`clean_stale_temporaries` removes when a run (re)starts in the folder.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Mapping

import torch
from torch import nn

from mmapps.errors import CheckpointError, NothingToResumeError, WriteError
from mmapps.train import state_io

FORMAT = "mmapps-checkpoint-v1"
TEMP_SUFFIX = ".tmp"
TRAINING_STATE_FILE = "resume.safetensors"  # beside best/last.safetensors in <run>/checkpoints
TRAINING_STATE_KIND = "training-state"
LEGACY_TRAINING_STATE_FILE = "last.pt"  # the pickle-based state of mmapps before the safetensors one: never loaded


class _RecordingWriter:
    """File wrapper that keeps the OSError of a failed write (torch.save reports it as a RuntimeError)."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle, self.error = handle, None

    def write(self, data: bytes) -> int:
        try:
            return self.handle.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        self.handle.flush()


def atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    """Write through ``.<name>.<random>.tmp`` in the same folder, fsync, then rename over `path`.

    Args:
        path: the target file.
        write: called with a binary file object to write into.

    Raises:
        WriteError: an OS-level failure (full disk, quota, read-only file system...), naming the
            file, the errno and the free space; `path` keeps its previous content.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
        with os.fdopen(fd, "wb") as handle:
            writer = _RecordingWriter(handle)
            try:
                write(writer)
            except RuntimeError:
                if writer.error is not None:
                    raise writer.error from None
                raise
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    except OSError as err:
        raise WriteError.from_os_error(path, err, f"{path.name} keeps its previous content.") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def clean_stale_temporaries(folder: Path) -> list[tuple[Path, int]]:
    """Remove the temporary files of interrupted writes (``.<name>.<random>.tmp``) in `folder`.

    Call only while holding the run folder's lock, so that no live writer owns them.
    Returns the (path, size in bytes) of each file removed.
    """
    removed = []
    if not Path(folder).is_dir():
        return removed
    for path in sorted(Path(folder).glob(f".*{TEMP_SUFFIX}")):
        if path.is_file():
            size = path.stat().st_size
            path.unlink()
            removed.append((path, size))
    return removed


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


def save_inference_checkpoint(path: Path, model: nn.Module, config_yaml: str, labels: dict[str, list[str]], extra: dict[str, Any] | None = None) -> None:
    from safetensors.torch import save

    state = {k: v.detach().contiguous().cpu() for k, v in unwrap(model).state_dict().items()}
    metadata = {"format": FORMAT, "config": config_yaml, "labels": json.dumps(labels), "extra": json.dumps(extra or {})}
    payload = save(state, metadata=metadata)
    atomic_write(path, lambda handle: handle.write(payload))


def read_inference_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Return (state_dict, metadata). Raises `CheckpointError` for a missing, corrupted or foreign file."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: not found (expected a .safetensors file written by mmapps, e.g. <run>/checkpoints/best.safetensors)")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as err:  # safetensors raises several error types for bad headers
        raise CheckpointError(f"checkpoint {path}: not a readable safetensors file ({type(err).__name__}: {err}); it may be truncated or corrupted") from None
    if metadata.get("format") == state_io.FORMAT:
        raise CheckpointError(
            f"checkpoint {path}: this is a run's resumable training state (for `mmapps <domain> train --resume <run folder>`), not "
            f"an inference checkpoint; give {path.with_name('best.safetensors')} or {path.with_name('last.safetensors')} instead"
        )
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: no mmapps metadata (format={metadata.get('format')!r}, expected {FORMAT!r}); it was not written by mmapps")
    return state, metadata


def checkpoint_config(metadata: Mapping[str, str], source: Path, domain: str | None = None) -> dict[str, Any]:
    """The run config stored in a checkpoint's metadata, as plain values (validated by the caller).

    Args:
        metadata: from `read_inference_checkpoint`.
        source: the checkpoint file (for messages).
        domain: the domain asked to use it; a checkpoint of another domain is refused before any
            config validation, naming the domain that trained it.

    Raises:
        CheckpointError: unparsable or tagged YAML (only plain YAML is ever written), a
            non-mapping config, or a checkpoint of another domain.
    """
    import yaml

    text = metadata.get("config")
    if not isinstance(text, str):
        raise CheckpointError(f"checkpoint {source}: its metadata has no 'config' entry; it was not written by mmapps train")
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(
            f"checkpoint {source}: the config in its metadata is not plain YAML ({first}); mmapps writes only plain "
            "mappings, lists and scalars there, so the file was altered or not written by mmapps"
        ) from None
    if not isinstance(values, dict):
        raise CheckpointError(f"checkpoint {source}: the config in its metadata is a {type(values).__name__}, expected a mapping of config fields")
    trained_by = values.get("domain")
    if domain is not None and trained_by != domain:
        raise CheckpointError(
            f"checkpoint {source}: this checkpoint was trained by the {trained_by} domain, not {domain}; "
            f"use it with `mmapps {trained_by} evaluate/predict --checkpoint {source}`"
        )
    return values


def check_finite_weights(state: Mapping[str, torch.Tensor], source: Path) -> None:
    """Refuse NaN/inf weights: they only ever give NaN predictions (and a meaningless AUROC of 0.5)."""
    bad = [(key, int((~torch.isfinite(t)).sum())) for key, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        named = ", ".join(f"{key} ({count} of {state[key].numel()} values)" for key, count in bad[:3])
        raise CheckpointError(
            f"checkpoint {source}: {len(bad)} tensor(s) hold NaN or infinite weights, e.g. {named}; the training that wrote "
            "it diverged (try a lower train.lr or train.grad_clip) or the file was altered; use an earlier checkpoint"
        )


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """Load a state dict strictly, explaining a mismatch instead of dumping key lists; refuses non-finite weights."""
    target = unwrap(model)
    expected = target.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong_shape:
        raise CheckpointError(
            f"checkpoint {source}: does not match this model ({len(missing)} missing, {len(unexpected)} unexpected, "
            f"{len(wrong_shape)} wrong-shape tensors; e.g. {(missing + unexpected + wrong_shape)[:3]}). "
            "It belongs to another model, recipe or domain."
        )
    check_finite_weights(state, source)
    target.load_state_dict(state)


def save_training_state(path: Path, state: dict[str, Any]) -> None:
    """Write the resumable state (`mmapps.train.state.pack_state`) as one safetensors file, atomically."""
    payload = state_io.dumps(state, TRAINING_STATE_KIND)
    atomic_write(path, lambda handle: handle.write(payload))


def load_training_state(path: Path, tensors: bool = True) -> dict[str, Any]:
    """Read the resumable state at `path` (``<run>/checkpoints/resume.safetensors``); without
    `tensors`, every tensor reads as None and only the counters, history and config are read.

    Raises:
        NothingToResumeError: no state file (the run stopped before its first checkpoint).
        CheckpointError: an old pickle-based ``last.pt`` in its place (never loaded), or a file that
            is truncated, corrupted or not an mmapps training state.
    """
    path = Path(path)
    run = path.parent.parent
    if not path.is_file():
        legacy = path.with_name(LEGACY_TRAINING_STATE_FILE)
        if legacy.is_file():
            raise CheckpointError(
                f"--resume {run}: {legacy} is a resumable state in the old pickle-based format (torch.save), and mmapps no longer "
                "reads pickle files, since loading one can run code planted in it; it was not loaded. Start the run again without "
                f"--resume, or start a new run from its weights with `mmapps <domain> train --init {path.with_name('last.safetensors')}` "
                "(or best.safetensors; a fresh optimiser and schedule)"
            )
        raise NothingToResumeError(
            f"--resume {run}: nothing to resume, no resumable checkpoint at {path} (the run stopped before its first "
            f"checkpoint); start without --resume, or point --resume at a run folder that has checkpoints/{TRAINING_STATE_FILE}"
        )
    try:
        state = state_io.load(path, TRAINING_STATE_KIND, tensors=tensors)
    except state_io.StateFormatError as err:
        raise CheckpointError(f"checkpoint {path}: cannot be loaded as a resumable training state: {err}; it may be truncated or corrupted, or was not written by mmapps train") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path}: holds a {type(state).__name__}, expected the mapping mmapps train writes")
    return state
