"""Input drift references: what the served samples look like, and the same summary of the validation split.

`sample_facts` is the one summary of a request's samples that monitoring may see (never text,
ids or pixels): per modality its presence (``present.<m>``), per image-like modality (image,
video) statistics of the tensor the model sees (``<m>_mean``, ``_std``, ``_skew``, ``_p05``,
``_p95``): an image z-scored by its reader always has mean 0 and std 1, so its shape statistics
carry the shift (an inverted radiograph flips the skewness; a darkening that clips in the VOI
window or bends the grey levels moves skewness and percentiles; a purely linear darkening is
undone by the z-score and is no shift for the model), and a few safe metadata fields the
domain's reader sets (``view``, ``manufacturer``, ``n_images``, ``has_note``, ``n_points``,
``n_frames``, ``duration_s``: the scanner / view mix). `input_distribution` applies it to the
validation split and turns each feature into a `mmapps.serve.drift` reference: categorical
(strings, booleans, small integers) or numeric (quantiles). It goes to the export sidecar's
``input_distribution`` (``model.json``) and, for a served training checkpoint, is computed from
the run's validation split at load and kept in ``<run>/input_distribution.v2.json``
(`checkpoint_input_distribution`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mmapps.serve.drift import (
    DriftReferenceError,
    categorical_reference,
    numeric_reference,
)

log = logging.getLogger("mmapps.serve")
SAFE_META = ("view", "manufacturer", "n_images", "has_note", "n_points", "n_frames", "duration_s")
IMAGE_KINDS = ("image", "video")
IMAGE_STATS = ("mean", "std", "skew", "p05", "p95")
MAX_PIXELS = 65536
CONSTANT_TOLERANCE = 1e-4
MAX_CATEGORIES = 20  # an integer feature with more distinct validation values is numeric
CACHE_NAME = "input_distribution.v2.json"  # v2: presence by `input_present` (a zero-length sequence is absent)
DEFAULT_LIMIT = 256  # validation samples read for a checkpoint's reference (load time stays seconds)


def sample_facts(samples: Iterable[Any], modality_to_kind: Mapping[str, str], modality_to_layout: Mapping[str, str] | None = None) -> dict[str, list]:
    """Feature -> one value per sample that has it (see the module docstring); the ``observe`` inputs of the metrics.

    Presence is `mmapps.data.sample.input_present` with each modality's layout (a zero-length
    ``padded`` sequence is absent); without layouts, present means not None.
    """
    from mmapps.data.sample import input_present

    samples = list(samples)
    layouts = modality_to_layout or {}
    facts: dict[str, list] = {f"present.{m}": [input_present(s.inputs.get(m), layouts.get(m, "fixed")) for s in samples] for m in modality_to_kind}
    for key in SAFE_META:
        values = [s.meta[key] for s in samples if isinstance(s.meta.get(key), (str, int, float, bool))]
        if values:
            facts[key] = values
    for m, kind in modality_to_kind.items():
        if kind not in IMAGE_KINDS:
            continue
        tensors = [s.inputs.get(m) for s in samples]
        for name, values in zip(IMAGE_STATS, zip(*(_image_stats(t) for t in tensors if hasattr(t, "float") and t.numel() > 1), strict=False), strict=False):
            facts[f"{m}_{name}"] = list(values)
    return facts


def _image_stats(tensor: Any) -> tuple[float, ...]:
    """Mean, std, skewness, 5th and 95th percentile of an input tensor (at most `MAX_PIXELS` values, evenly strided)."""
    import torch

    x = tensor.detach().float().flatten()
    x = x[:: max(1, x.numel() // MAX_PIXELS)]
    mean, std = x.mean(), x.std()
    skew = ((x - mean) ** 3).mean() / std.clamp_min(1e-12) ** 3
    p05, p95 = torch.quantile(x, torch.tensor([0.05, 0.95]))
    return float(mean), float(std), float(skew), float(p05), float(p95)


def _reference(values: list) -> dict | None:
    if all(isinstance(v, (str, bool)) for v in values) or (all(isinstance(v, int) for v in values) and len(set(values)) <= MAX_CATEGORIES):
        return categorical_reference(values)
    try:
        x = [float(v) for v in values]
    except (TypeError, ValueError):
        return None
    if max(x) - min(x) <= CONSTANT_TOLERANCE * max(1.0, abs(max(x))):
        return None  # constant on validation (a z-scored image's mean and std): no information, and rounding noise would read as drift
    try:
        return numeric_reference(x)
    except DriftReferenceError:
        return None


def input_distribution(samples: Iterable[Any], modality_to_kind: Mapping[str, str], limit: int = 1000,
                       modality_to_layout: Mapping[str, str] | None = None) -> dict[str, dict]:
    """Feature -> drift reference over (at most ``limit``) validation samples; presence is categorical over ``"True"``/``"False"``."""
    taken = []
    for i, sample in enumerate(samples):
        if i >= limit:
            break
        taken.append(sample)
    facts = sample_facts(taken, modality_to_kind, modality_to_layout)
    out = {}
    for name, values in sorted(facts.items()):
        ref = _reference([str(v) for v in values] if name.startswith("present.") else values) if values else None
        if ref is not None:
            out[name] = ref
    return out


def modality_kinds(cfg: Any, domain: Any) -> dict[str, str]:
    """The model's modalities -> their kind (``image``, ``text``...)."""
    from mmapps.models.build import selected_modalities

    return {m: domain.modality(m).kind for m in selected_modalities(cfg, domain)}


def split_input_distribution(split: Any, cfg: Any, domain: Any, limit: int = 1000) -> dict[str, dict]:
    """`input_distribution` of a dataset split (the export's validation split), read sample by sample."""
    kinds = modality_kinds(cfg, domain)
    return input_distribution((split[i] for i in range(len(split))), kinds, limit, {m: domain.modality(m).layout for m in kinds})


def checkpoint_input_distribution(checkpoint: Path, cfg: Any, domain: Any, limit: int = DEFAULT_LIMIT) -> dict[str, dict]:
    """The input reference of a training checkpoint: ``<run>/input_distribution.v2.json``, else computed from the run's validation split.

    The run's data root must still be readable; when it is not (or the split is empty) the service
    runs without input drift references (missing-modality rates are still kept) and says so once.
    The computed reference is written beside the run's config for the next load when the folder is writable.
    """
    run = Path(checkpoint).resolve().parent.parent
    cache = run / CACHE_NAME
    if cache.is_file():
        try:
            found = json.loads(cache.read_text())
            if isinstance(found, dict):
                return found
        except (OSError, ValueError):
            pass
    try:
        from mmapps.domain import resolve
        from mmapps.workflows.resolve import ensure_data_root

        splits = resolve(domain.build_datasets)(ensure_data_root(cfg, domain))  # a demo run's data: the demo cache, as `predict` finds it
        reference = split_input_distribution(splits.val, cfg, domain, limit)
    except Exception as err:  # noqa: BLE001  # a moved data root must not stop the service from loading
        log.warning("no input drift reference for %s: the run's validation split could not be read (%s)", checkpoint, type(err).__name__)
        return {}
    try:
        cache.write_text(json.dumps(reference, indent=1))
    except OSError:
        pass
    return reference
