"""``MODEL_CARD.md``: data, metrics with CIs, parity, intended use and limits of an exported model."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _metric_rows(metrics: dict[str, Any], keys: list[str]) -> list[str]:
    rows = []
    for key in keys:
        value = metrics.get(key)
        if not isinstance(value, (int, float)):
            continue
        low, high = metrics.get(f"{key}/ci_low"), metrics.get(f"{key}/ci_high")
        ci = f"[{low:.3f}, {high:.3f}]" if isinstance(low, (int, float)) and isinstance(high, (int, float)) else "n/a"
        rows.append(f"| {key} | {value:.4f} | {ci} |")
    return rows


def _headline(domain: Any, metrics: dict[str, Any]) -> list[str]:
    from mmapps.report.model import headline_metrics

    keys = [k for k in headline_metrics(metrics, domain.headline_metrics) if not k.endswith(("/ci_low", "/ci_high"))]
    return keys[:20]


def _modalities(domain: Any, model: Any) -> str:
    used = getattr(model, "modalities", domain.modality_names)
    return ", ".join(f"{m.name} ({m.kind}, {m.layout}, {'optional' if m.optional else 'required'})" for m in domain.modalities if m.name in used)


def write_model_card(folder: Path, sidecar: Any, loaded: Any, summary: Any) -> Path:
    """Write ``MODEL_CARD.md`` into the export folder; no sample or patient identifier appears in it."""
    domain, cfg = loaded.domain, loaded.cfg
    splits = loaded.splits
    lines = [
        f"# Model card: {domain.name} ({cfg.model.fusion.name} fusion)",
        "",
        f"{domain.description}.",
        "",
        "## Model",
        f"- Modalities: {_modalities(domain, loaded.model)}",
        f"- Tasks: {', '.join(f'{t.name} ({t.head}, {len(t.labels)} labels)' for t in domain.tasks)}",
        f"- Exported from `{loaded.checkpoint.name}`, ONNX opset {sidecar.opset}, mmapps {sidecar.mmapps_version}, config SHA-256 `{sidecar.config_sha256[:16]}...`",
        "",
        "## Data",
        f"- Data: the folder `{Path(str(cfg.data.root)).name}` the checkpoint was trained on (the domain's readers, docs/{domain.name}.md); splits by group, no group in two splits.",
        f"- Samples: {', '.join(f'{n} {len(getattr(splits, n))}' if n in getattr(loaded, 'split_names', (n,)) else f'{n} not read by export' for n in ('train', 'val', 'test'))}; skipped inputs: {splits.issues.summary()}.",
        "",
        "## Metrics",
    ]
    test = loaded.test_metrics
    if test:
        lines += ["Test split (from the run's metrics.json, PyTorch), 95% bootstrap CIs by group:", "", "| metric | value | 95% CI |", "|---|---|---|", *_metric_rows(test, _headline(domain, test)), ""]
    val = summary.metrics_torch
    lines += ["Validation split (PyTorch; thresholds were chosen on it, so its operating points are optimistic):", "", "| metric | value | 95% CI |", "|---|---|---|", *_metric_rows(val, _headline(domain, val)), ""]
    lines += ["## Parity (onnxruntime vs PyTorch, validation)", "", *[f"- {line.strip()}" for line in summary.parity.lines()[1:]], ""]
    lines += [
        "## Intended use",
        f"- Research and engineering evaluation of multimodal {domain.name} models; decision support only under a clinical or operational validation of its own.",
        "- Inputs must go through mmapps' pre-processing (see `model.json` `preprocess` and docs/deploy.md); any modality may be absent (presence False).",
        "",
        "## Limits",
        "- Trained on the data above; performance on other sites, devices or populations is unknown until measured there.",
        "- Decision thresholds were chosen on the validation split; re-choose them on local data before use.",
        "- Monitor drift against `model.json` `score_distribution` (validation scores).",
        "",
    ]
    path = Path(folder) / "MODEL_CARD.md"
    path.write_text("\n".join(lines))
    return path
