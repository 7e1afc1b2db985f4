"""The benchmark report: every fusion and single-modality baseline over K seeds, plus missing-modality robustness."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from mmapps.config import RunConfig
from mmapps.domain import Domain
from mmapps.report.model import markdown_table
from mmapps.workflows.resolve import resolve_config


@dataclass
class BenchmarkRow:
    """One configuration's primary metric over seeds, and with each modality removed at test time."""

    name: str
    kind: str  # "fusion" or "baseline"
    values: list[float] = field(default_factory=list)
    ci: list[tuple[float, float]] = field(default_factory=list)
    removed: dict[str, list[float]] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        finite = [v for v in self.values if math.isfinite(v)]
        return statistics.fmean(finite) if finite else math.nan

    @property
    def sd(self) -> float:
        finite = [v for v in self.values if math.isfinite(v)]
        return statistics.stdev(finite) if len(finite) > 1 else 0.0


def run_benchmark(domain: Domain, preset: str = "quick", seeds: int = 3, out_dir: Path = Path("runs/benchmark"), overrides: Sequence[str] = (), fusions: Sequence[str] | None = None) -> Path:
    """Train and test each fusion and baseline for `seeds` seeds; write benchmark.md/.json/.png in `out_dir`.

    Args:
        domain: the domain.
        preset: ``quick`` (the domain's quick recipe, falling back to smoke) or ``full`` (default recipe).
        seeds: seeds per configuration.
        out_dir: where runs and the comparison report go.
        overrides: ``--set`` strings applied to every run.
        fusions: restrict to these fusions (default: all the domain declares).
    """
    from mmapps.train.trainer import primary_key
    from mmapps.workflows.run import evaluate, train

    recipe = "default" if preset == "full" else ("quick" if "quick" in domain.recipes else "smoke")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    primary = primary_key(domain)
    plans: list[tuple[str, str, dict[str, Any]]] = [(f, "fusion", {"model": {"fusion": {"name": f}}}) for f in (fusions or domain.fusions)]
    plans += [("+".join(subset) + " only", "baseline", {"model": {"modalities": list(subset)}}) for subset in domain.baseline_subsets()]
    rows = []
    for name, kind, extra in plans:
        row = BenchmarkRow(name, kind)
        for seed in range(seeds):
            run_dir = out_dir / f"{name.replace(' ', '_').replace('+', '-')}-s{seed}"
            cfg: RunConfig = resolve_config(domain, recipe, overrides=overrides, extra={**extra, "seed": seed, "out_dir": str(run_dir)})
            result = train(cfg, domain)
            row.values.append(float(result.metrics.get(primary, math.nan)))
            row.ci.append((float(result.metrics.get(f"{primary}/ci_low", math.nan)), float(result.metrics.get(f"{primary}/ci_high", math.nan))))
            used = cfg.model.modalities or list(domain.modality_names)
            if kind == "fusion" and len(used) > 1:
                for removed in [m for m in domain.removable_modalities if m in used]:
                    ev = evaluate(run_dir / "checkpoints" / "best.safetensors", domain, out_dir=run_dir / f"without-{removed}", drop_modalities=[removed], overrides={"eval": {"bootstrap_resamples": 0}})
                    row.removed.setdefault(removed, []).append(float(ev.metrics.get(primary, math.nan)))
        rows.append(row)
    return write_benchmark_report(domain, rows, primary, recipe, seeds, out_dir)


def write_benchmark_report(domain: Domain, rows: list[BenchmarkRow], primary: str, recipe: str, seeds: int, out_dir: Path) -> Path:
    removable = [m for m in domain.removable_modalities if any(m in row.removed for row in rows)]
    header = ["configuration", "kind", f"{primary} mean ± sd", "mean 95% CI (bootstrap)"] + [f"without {m}" for m in removable]
    table = []
    for row in rows:
        lows = [lo for lo, _ in row.ci if math.isfinite(lo)]
        highs = [hi for _, hi in row.ci if math.isfinite(hi)]
        ci = f"[{statistics.fmean(lows):.3f}, {statistics.fmean(highs):.3f}]" if lows and highs else "n/a"
        removed = [f"{statistics.fmean(row.removed[m]):.3f}" if m in row.removed else "-" for m in removable]
        table.append([row.name, row.kind, f"{row.mean:.4f} ± {row.sd:.4f}", ci] + removed)
    best_fusion = max((r for r in rows if r.kind == "fusion"), key=lambda r: r.mean, default=None)
    best_single = max((r for r in rows if r.kind == "baseline"), key=lambda r: r.mean, default=None)
    lines = [
        f"# {domain.name} benchmark",
        "",
        f"Recipe `{recipe}`, {seeds} seed(s) per configuration; test-split {primary} (mean ± sd over seeds).",
        "The 'without' columns evaluate the same fused checkpoints with that modality removed at test time.",
        "",
        markdown_table(header, table),
        "",
    ]
    if best_fusion and best_single:
        lines.append(f"Best fusion `{best_fusion.name}` {best_fusion.mean:.4f} vs best single modality `{best_single.name}` {best_single.mean:.4f} (gain {best_fusion.mean - best_single.mean:+.4f}).")
    figure = _plot(rows, primary, out_dir / "benchmark.png")
    lines += ["", f"![benchmark]({figure.name})", ""]
    path = out_dir / "benchmark.md"
    path.write_text("\n".join(lines))
    payload = [{"name": r.name, "kind": r.kind, "values": r.values, "mean": r.mean, "sd": r.sd, "ci": r.ci, "removed": r.removed} for r in rows]
    (out_dir / "benchmark.json").write_text(json.dumps({"domain": domain.name, "primary": primary, "recipe": recipe, "rows": payload}, indent=2, default=str))
    return path


def _plot(rows: list[BenchmarkRow], primary: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4, 0.9 * len(rows)), 3.2))
    colours = ["tab:blue" if r.kind == "fusion" else "tab:grey" for r in rows]
    ax.bar(range(len(rows)), [r.mean for r in rows], yerr=[r.sd for r in rows], color=colours, capsize=3)
    ax.set_xticks(range(len(rows)), [r.name for r in rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(primary)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
