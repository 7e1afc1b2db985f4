"""Write ``report.md`` (people) and ``report.json`` (machines) from core and domain sections."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Sequence

from mmapps.domain import resolve
from mmapps.report.model import ReportContext, Section, headline_metrics, markdown_table


def summary_section(ctx: ReportContext) -> list[Section]:
    """Run facts and the headline metrics."""
    cfg = ctx.cfg
    facts = [
        ["domain", ctx.domain.name],
        ["recipe", cfg.recipe],
        ["fusion", cfg.model.fusion.name],
        ["modalities", ", ".join(cfg.model.modalities or ctx.domain.modality_names)],
        ["seed", cfg.seed],
    ] + [[k, v] for k, v in ctx.info.items()]
    headline = [[k, _with_ci(ctx.metrics, k, v)] for k, v in headline_metrics(ctx.metrics, ctx.domain.headline_metrics).items()][:40]
    body = markdown_table(["", ""], facts) + "\n\n" + markdown_table(["metric", "value"], headline)
    return [Section("Summary", body, data={"facts": {str(k): v for k, v in facts}})]


def _with_ci(metrics: dict[str, Any], key: str, value: float) -> str:
    low, high = metrics.get(f"{key}/ci_low"), metrics.get(f"{key}/ci_high")
    if isinstance(low, float) and isinstance(high, float) and math.isfinite(low) and math.isfinite(high):
        return f"{value:.4f} [{low:.4f}, {high:.4f}]"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def training_curves_section(ctx: ReportContext) -> list[Section]:
    """Training loss and validation primary metric by epoch."""
    if not ctx.history:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] + 1 for row in ctx.history]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    axes[0].plot(epochs, [row["train/loss"] for row in ctx.history], marker="o")
    axes[0].set(title="training loss", xlabel="epoch")
    val_keys = [k for k in ctx.history[-1] if k.startswith("val/")]
    for key in val_keys[:4]:
        axes[1].plot(epochs, [row.get(key, math.nan) for row in ctx.history], marker="o", label=key[4:])
    axes[1].set(title="validation", xlabel="epoch")
    if val_keys:
        axes[1].legend(fontsize=7)
    fig.tight_layout()
    path = ctx.figures_dir / "training_curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [Section("Training", f"{len(epochs)} epoch(s); best checkpoint selected on the validation primary metric.", [path])]


def _complexity(ctx: ReportContext) -> list[Section]:
    from mmapps.report.complexity import complexity_section

    return complexity_section(ctx)


CORE_SECTIONS: tuple[Callable[[ReportContext], list[Section]], ...] = (summary_section, training_curves_section, _complexity)


def write_report(ctx: ReportContext, extra_sections: Sequence[Any] = ()) -> Path:
    """Render core sections, then the domain's, into ``report.md`` and ``report.json``; return the .md path."""
    ctx.figures_dir.mkdir(parents=True, exist_ok=True)
    # domain sections run first because some add metrics (e.g. the pointing game) that the core
    # summary table must show; the core sections still come first in the report
    domain_sections: list[Section] = []
    for make in (*(resolve(ref) for ref in ctx.domain.report_sections), *extra_sections):
        domain_sections.extend(make(ctx))
    sections: list[Section] = [section for make in CORE_SECTIONS for section in make(ctx)] + domain_sections
    lines = [f"# {ctx.domain.name} report", ""]
    lines += [f"> **{note}**" for note in ctx.notes] + ([""] if ctx.notes else [])
    for section in sections:
        lines += [f"## {section.title}", "", section.markdown, ""]
        lines += [f"![{p.stem}]({p.relative_to(ctx.run_dir).as_posix()})" for p in section.figures]
        lines.append("")
    md_path = ctx.run_dir / "report.md"
    md_path.write_text("\n".join(lines))
    payload = {
        "domain": ctx.domain.name,
        "notes": ctx.notes,
        "metrics": _jsonable(ctx.metrics),
        "sections": [{"title": s.title, "figures": [p.relative_to(ctx.run_dir).as_posix() for p in s.figures], "data": _jsonable(s.data)} for s in sections],
    }
    (ctx.run_dir / "report.json").write_text(json.dumps(payload, indent=2))
    return md_path


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        return _jsonable(value.item())
    return value
