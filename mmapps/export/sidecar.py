"""``model.json``: everything needed to run an exported model and to trust its files.

The sidecar records the graph's inputs and outputs (name, dtype, shape with symbolic axes), the
pre-processing boundary (``preprocess``: tokenizers, normalisation constants, data options), the
lazy reference of the `mmapps.export.adapter.GraphRuntime` that drives the graph, label names,
the decision thresholds chosen on validation, the validation distribution of every output score
(for drift monitoring), the parity figures, the mmapps version, the hash of the training config
(and the config itself) and the SHA-256 of every other file of the export folder.

`read_sidecar` checks every hash: a modified, missing or added artifact, or a sidecar edited after
export (``sidecar_sha256`` over its own canonical JSON), is refused with `ExportIntegrityError`
naming the file. The hashes guard against damage and accidental edits; they are not a signature.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmapps.errors import CheckpointError
from mmapps.export.spec import TensorSpec

SIDECAR = "model.json"
FORMAT = "mmapps-export-v1"
_CHUNK = 1 << 20


class ExportIntegrityError(CheckpointError):
    """An export folder whose files do not match the SHA-256 its sidecar recorded."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def config_hash(config_yaml: str) -> str:
    """SHA-256 of the resolved training config as saved in the checkpoint."""
    return hashlib.sha256(config_yaml.encode()).hexdigest()


@dataclass
class Sidecar:
    """The parsed ``model.json`` (see the module docstring); `extra` keeps sections added by others."""

    domain: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    runtime: str
    preprocess: dict[str, Any]
    labels: dict[str, list[str]]
    thresholds: dict[str, dict[str, float]]
    score_distribution: dict[str, Any]
    parity: dict[str, Any]
    config: str
    mmapps_version: str
    opset: int
    model_file: str = "model.onnx"
    artifacts: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def config_sha256(self) -> str:
        return config_hash(self.config)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "domain": self.domain,
            "mmapps_version": self.mmapps_version,
            "opset": self.opset,
            "model_file": self.model_file,
            "inputs": [s.to_json() for s in self.inputs],
            "outputs": [s.to_json() for s in self.outputs],
            "runtime": self.runtime,
            "preprocess": self.preprocess,
            "labels": self.labels,
            "thresholds": self.thresholds,
            "score_distribution": self.score_distribution,
            "parity": self.parity,
            "config_sha256": self.config_sha256,
            "config": self.config,
            "artifacts": self.artifacts,
            **self.extra,
        }


def hash_artifacts(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under `folder` except the sidecar itself."""
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file() and p.relative_to(folder).as_posix() != SIDECAR}


def content_hash(values: dict[str, Any]) -> str:
    """SHA-256 of the sidecar's own fields (canonical JSON, without ``sidecar_sha256``)."""
    body = {k: v for k, v in values.items() if k != "sidecar_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def write_sidecar(folder: Path, sidecar: Sidecar) -> Path:
    """Hash every file now in `folder`, then write ``model.json`` (the last file of an export)."""
    sidecar.artifacts = hash_artifacts(folder)
    values = sidecar.to_json()
    values["sidecar_sha256"] = content_hash(values)
    path = Path(folder) / SIDECAR
    path.write_text(json.dumps(values, indent=1, sort_keys=False) + "\n")
    return path


def read_sidecar(folder_or_model: Path, verify: bool = True) -> tuple[Sidecar, Path]:
    """Read and (by default) verify an export: returns (sidecar, export folder).

    Args:
        folder_or_model: the export folder, its ``model.json`` or its ``model.onnx``.
        verify: check the SHA-256 of every artifact (refusing modified, missing or extra files).

    Raises:
        CheckpointError: no sidecar, or a sidecar that is not an mmapps export's.
        ExportIntegrityError: an artifact whose hash does not match.
    """
    path = Path(folder_or_model)
    folder = path if path.is_dir() else path.parent
    side = folder / SIDECAR
    if not side.is_file():
        raise CheckpointError(f"export {path}: no {SIDECAR} beside it; an exported model is the folder written by `mmapps <domain> export` (model.onnx with its model.json), not a lone ONNX file")
    try:
        values = json.loads(side.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"export {folder}: {SIDECAR} is not valid JSON ({err}); the file was altered or truncated, export again") from None
    if not isinstance(values, dict) or values.get("format") != FORMAT:
        found = values.get("format") if isinstance(values, dict) else type(values).__name__
        raise CheckpointError(f"export {folder}: {SIDECAR} has format {found!r}, expected {FORMAT!r}; it was not written by this mmapps export")
    known = {"sidecar_sha256", "format", "domain", "mmapps_version", "opset", "model_file", "inputs", "outputs", "runtime", "preprocess", "labels", "thresholds", "score_distribution", "parity", "config_sha256", "config", "artifacts"}
    try:
        sidecar = Sidecar(
            domain=values["domain"], inputs=[TensorSpec.from_json(s) for s in values["inputs"]], outputs=[TensorSpec.from_json(s) for s in values["outputs"]],
            runtime=values["runtime"], preprocess=values["preprocess"], labels=values["labels"], thresholds=values["thresholds"],
            score_distribution=values["score_distribution"], parity=values["parity"], config=values["config"], mmapps_version=values["mmapps_version"],
            opset=int(values["opset"]), model_file=values["model_file"], artifacts=values["artifacts"], extra={k: v for k, v in values.items() if k not in known},
        )
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"export {folder}: {SIDECAR} lacks or mangles the field {err}; export again") from None
    if verify:
        if values.get("sidecar_sha256") != content_hash(values) or values.get("config_sha256") != sidecar.config_sha256:
            raise ExportIntegrityError(
                f"export {folder}: {SIDECAR} was modified after export (its content does not match its sidecar_sha256); the model is refused: "
                "edited thresholds, labels or inputs would change what it predicts. Re-export, or copy the folder again"
            )
        verify_artifacts(folder, sidecar)
    return sidecar, folder


def verify_artifacts(folder: Path, sidecar: Sidecar) -> None:
    """Refuse an export folder whose files differ from the hashes in its sidecar."""
    found = hash_artifacts(folder)
    changed = sorted(k for k in sidecar.artifacts if k in found and found[k] != sidecar.artifacts[k])
    missing = sorted(k for k in sidecar.artifacts if k not in found)
    added = sorted(k for k in found if k not in sidecar.artifacts)
    if changed or missing or added:
        parts = [f"{label} {', '.join(names[:5])}" for label, names in (("modified:", changed), ("missing:", missing), ("not part of the export:", added)) if names]
        raise ExportIntegrityError(
            f"export {folder}: its files do not match the SHA-256 recorded in {SIDECAR} ({'; '.join(parts)}); "
            "the model is refused: an altered or half-copied export may predict anything. Copy the folder again or re-export it"
        )
