"""A loaded model version: samples in, the domain's own post-processed predictions out.

`ModelRunner` is the one interface the web code calls (MONAI's ``Inferer`` shape): it knows
the domain's layouts and post-processing; the HTTP side knows neither. A checkpoint is loaded
exactly as ``mmapps <domain> predict`` loads it (config and label maps from the safetensors
metadata, the same model builder, the same weight checks); an export folder (``model.json``
beside its artifacts, see `mmapps.export`) is loaded through the export package, whose loader
checks the artifact hashes.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mmapps.domain import Domain, resolve, with_configured_labels
from mmapps.errors import CheckpointError


@dataclass
class Prediction:
    """One sample's answer: task -> the domain's post-processed prediction (JSON-able), plus raw outputs."""

    sample_id: str
    tasks: dict[str, dict[str, Any]]
    raw: dict[str, Any] = field(default_factory=dict)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ModelRunner:
    """A model ready to predict.

    Attributes:
        domain: the domain with this model's label lists.
        cfg: the run config stored with the model.
        version: the served version name; ``sha256``: the artifact's hash.
        source: the checkpoint file or export folder.
        thresholds: task -> label -> decision threshold chosen on validation (from the run's
            ``metrics.json`` ``threshold/<label>`` keys), empty when the run has none.
        modality_to_layout: how samples are collated (the domain's layouts of the model's modalities).
    """

    def __init__(self, domain: Domain, cfg: Any, model: torch.nn.Module, version: str, sha256: str, source: Path, thresholds: dict[str, dict[str, float]]) -> None:
        from mmapps.models.build import selected_modalities

        self.domain, self.cfg, self.model = domain, cfg, model.eval() if hasattr(model, "eval") else model
        self.version, self.sha256, self.source, self.thresholds = version, sha256, source, thresholds
        self.modalities = selected_modalities(cfg, domain)
        self.modality_to_layout = {m: domain.modality(m).layout for m in self.modalities}
        self.postprocess = {t.name: resolve(t.postprocess) for t in domain.tasks}
        self.observed_shapes: dict[str, tuple[int, ...]] = {}  # per modality, a sample's tensor shape (v2 metadata)
        self._lock = threading.Lock()  # one forward at a time per model (the batcher's thread pool may hold several)

    @property
    def labels(self) -> dict[str, list[str]]:
        return {t.name: list(t.labels) for t in self.domain.tasks}

    @torch.no_grad()
    def predict(self, samples: Sequence[Any], postprocess: bool = True) -> list[Prediction]:
        """Collate ``samples`` (`mmapps.data.Sample`), run the model once, post-process per sample.

        With ``postprocess=False`` only the raw outputs are returned (the v2 tensor protocol):
        ``raw`` maps ``<task>`` (a tensor head) or ``<task>.<key>`` (a dict of tensors) to the
        sample's row.
        """
        from mmapps.data.sample import collate_samples

        samples = list(samples)
        self._observe_shapes(samples)
        batch = collate_samples(samples, self.modality_to_layout)
        with self._lock:
            outputs = self.model(batch)
        per_task = {name: fn(outputs[name], batch) for name, fn in self.postprocess.items()} if postprocess else {}
        flat = _flatten_outputs(outputs, len(samples))
        results = []
        for i, sample in enumerate(samples):
            tasks = {name: self._decide(name, dict(rows[i])) for name, rows in per_task.items()}
            results.append(Prediction(sample.sample_id, tasks, {k: v[i] for k, v in flat.items()}))
        return results

    def _observe_shapes(self, samples: Sequence[Any]) -> None:
        for sample in samples:
            for name in self.modalities:
                value = sample.inputs.get(name)
                if isinstance(value, torch.Tensor) and name not in self.observed_shapes:
                    self.observed_shapes[name] = tuple(value.shape)

    def _decide(self, task: str, prediction: dict[str, Any]) -> dict[str, Any]:
        """Add the per-label decision at the validation-chosen threshold to a ``scores`` prediction."""
        thresholds = self.thresholds.get(task)
        scores = prediction.get("scores")
        if thresholds and isinstance(scores, list) and scores and not isinstance(scores[0], list):
            labels = self.labels[task]
            prediction["labels"] = labels
            prediction["thresholds"] = [thresholds.get(label) for label in labels]
            prediction["decisions"] = [None if thresholds.get(label) is None else bool(s >= thresholds[label]) for label, s in zip(labels, scores)]
        return prediction


def _flatten_outputs(outputs: dict[str, Any], size: int) -> dict[str, Any]:
    """Model outputs -> name -> (B, ...) float numpy array, for tensors whose first axis is the batch."""
    flat: dict[str, Any] = {}
    for name, value in sorted(outputs.items()):
        items = [(name, value)] if isinstance(value, torch.Tensor) else [(f"{name}.{k}", v) for k, v in sorted(value.items())] if isinstance(value, dict) else []
        for key, tensor in items:
            if isinstance(tensor, torch.Tensor) and tensor.dim() >= 1 and tensor.shape[0] == size:
                flat[key] = tensor.detach().float().cpu().numpy()
    return flat


def load_runner(source: Path, domain: Domain, version: str | None = None) -> ModelRunner:
    """A `ModelRunner` from a training checkpoint (``.safetensors``) or an export folder (``model.json``).

    Raises:
        CheckpointError: missing, corrupted, foreign or another domain's model; an export folder
            whose artifacts do not match their hashes.
    """
    source = Path(source)
    if source.is_dir() or source.suffix == ".onnx" or source.name == "model.json":
        return _load_export(source, domain, version)
    from mmapps.config import validate_config
    from mmapps.models.build import build_model
    from mmapps.train import checkpoint as ckpt

    state, metadata = ckpt.read_inference_checkpoint(source)
    cfg = validate_config(ckpt.checkpoint_config(metadata, source, domain.name))
    domain = with_configured_labels(domain, cfg)
    model = build_model(cfg, domain)
    ckpt.load_weights(model, state, source)
    sha = file_sha256(source)
    return ModelRunner(domain, cfg, model.to("cpu"), version or sha[:12], sha, source, read_thresholds(source.resolve().parent.parent / "metrics.json", domain))


def _load_export(source: Path, domain: Domain, version: str | None) -> ModelRunner:
    """An export (folder, its model.json or model.onnx): hashes verified by `mmapps.export`, run on onnxruntime."""
    try:
        from mmapps.export.model_source import exported_config, is_export, load_model
    except ImportError as err:
        raise CheckpointError(f"--checkpoint {source}: an export, but this installation cannot load exports ({err}); serve the training checkpoint instead") from None
    if not is_export(source):
        raise CheckpointError(f"--checkpoint {source}: a folder without model.json; give a .safetensors checkpoint or an export folder written by `mmapps {domain.name} export`")
    cfg = exported_config(source, None, domain.name)
    domain = with_configured_labels(domain, cfg)
    model = load_model(source, cfg, domain, None, "cpu")  # verifies every artifact's SHA-256 against model.json
    folder = source if source.is_dir() else source.parent
    graph = folder / "model.onnx"
    sha = file_sha256(graph if graph.is_file() else folder / "model.json")
    return ModelRunner(domain, cfg, model, version or sha[:12], sha, folder, read_thresholds(folder / "metrics.json", domain))


def read_thresholds(metrics_json: Path, domain: Domain) -> dict[str, dict[str, float]]:
    """``threshold/<label>`` values of a run's metrics (chosen on validation), per task whose labels they name."""
    try:
        metrics = json.loads(metrics_json.read_text())
    except (OSError, ValueError):
        return {}
    found: dict[str, dict[str, float]] = {}
    for task in domain.tasks:
        values = {label: float(metrics[f"threshold/{label}"]) for label in task.labels if isinstance(metrics.get(f"threshold/{label}"), (int, float))}
        if values:
            found[task.name] = values
    return found


def warm_up(runner: ModelRunner) -> float:
    """One forward pass on a sample with every modality absent (readiness waits for it); returns its seconds.

    The forward pass builds the kernels and allocations a first request would otherwise pay for;
    no data is needed because an mmapps model accepts absent optional modalities. A model with a
    required modality (driving's LiDAR) cannot run without data: its warm-up is the load alone,
    and its first request pays the first-call cost.
    """
    from mmapps.data import Sample

    if any(not runner.domain.modality(m).optional for m in runner.modalities):
        return 0.0
    start = time.perf_counter()
    try:
        runner.predict([Sample("warm-up", "warm-up", {name: None for name in runner.modalities})], postprocess=False)
    except (KeyError, IndexError, ValueError, RuntimeError, TypeError, AttributeError):
        return 0.0  # a model that needs per-sample metadata (surveillance's window times) warms on its first request
    return time.perf_counter() - start
