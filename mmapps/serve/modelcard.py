"""The model card served with each model version: data, metrics with CIs, intended use, limits.

Built from what the run left beside the checkpoint (``config.yaml`` values in the checkpoint,
``metrics.json``, ``summary.json``) or from an export folder's ``model.json`` card when present.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

UNDECLARED_USE = "not declared by the domain's plugin (Domain.intended_use): ask its authors before relying on it"


def model_card(runner: Any) -> dict[str, Any]:
    """A JSON model card for a loaded `mmapps.serve.runner.ModelRunner`."""
    source: Path = runner.source
    run_dir = source if source.is_dir() else source.resolve().parent.parent
    exported = _read_json(run_dir / "model.json") if source.is_dir() else None
    if isinstance(exported, dict) and isinstance(exported.get("model_card"), dict):
        return {**exported["model_card"], "version": runner.version, "sha256": runner.sha256}
    metrics = _read_json(run_dir / "metrics.json") or {}
    domain = runner.domain
    headline = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and "/ci_" not in k and any(k.startswith(p.split("*")[0]) for p in (domain.headline_metrics or ("",)))}
    with_ci = {k: {"value": v, "ci_low": metrics.get(f"{k}/ci_low"), "ci_high": metrics.get(f"{k}/ci_high")} for k, v in sorted(headline.items())[:40]}
    cfg = runner.cfg
    return {
        "model": domain.name,
        "version": runner.version,
        "sha256": runner.sha256,
        "description": domain.description,
        "modalities": [{"name": m.name, "kind": m.kind, "reader": m.reader, "optional": m.optional} for m in domain.modalities if m.name in runner.modalities],
        "tasks": [{"name": t.name, "labels": list(t.labels), "primary_metric": t.primary_metric} for t in domain.tasks],
        "data": {"root": "demo data" if cfg.data.root is None else "user data (path withheld)", "recipe": getattr(cfg, "recipe", None), "seed": cfg.seed},
        "test_metrics": with_ci,
        "decision_thresholds": "chosen on the validation split (threshold/<label> in metrics.json)" if runner.thresholds else "none stored: scores only",
        "intended_use": getattr(domain, "intended_use", "") or UNDECLARED_USE,
        "limits": [
            "metrics hold for data like the test split; check drift gauges on /metrics before trusting scores on other sites or devices",
            "trained on synthetic demo data" if cfg.data.root is None else "trained on the data set named in the run's report",
        ],
    }


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
