"""Report building blocks: sections (Markdown + figures) and the context domains draw them from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Section:
    """One part of ``report.md``.

    Args:
        title: the section heading.
        markdown: body text and tables (Markdown).
        figures: PNG files (written under the run's ``figures/``) shown after the body.
        data: machine-readable content copied into ``report.json``.
    """

    title: str
    markdown: str
    figures: list[Path] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class ReportContext:
    """Everything a report section may draw from.

    Attributes:
        cfg: the resolved run config.
        domain: the domain.
        run_dir: the run directory; `figures_dir` is where PNGs go.
        metrics: the test metrics (flat dict).
        records: task -> test prediction records.
        val_records: task -> validation prediction records (threshold choice, calibration...).
        model: the trained model (eval mode), e.g. for Grad-CAM; may be None.
        test_dataset: the test dataset (to draw inputs again), may be None.
        history: per-epoch training rows.
        notes: lines to put first in the report (e.g. a leakage warning).
    """

    cfg: Any
    domain: Any
    run_dir: Path
    figures_dir: Path
    metrics: dict[str, Any]
    records: dict[str, list[Any]]
    val_records: dict[str, list[Any]] = field(default_factory=dict)
    model: Any = None
    test_dataset: Any = None
    history: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def headline_metrics(metrics: dict[str, Any], patterns: tuple[str, ...] = ()) -> dict[str, float]:
    """Scalar metrics without CI bounds, restricted to `patterns` (fnmatch) when any are given."""
    import fnmatch

    scalar = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and "/ci_" not in k}
    if not patterns:
        return scalar
    return {k: v for k, v in scalar.items() if any(fnmatch.fnmatch(k, p) for p in patterns)}


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table; floats are shown with 4 decimals."""

    def cell(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
