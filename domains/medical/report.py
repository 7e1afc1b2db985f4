"""Report sections of the medical domain: per-finding table with CIs, strata, calibration, ROC curves, Grad-CAM."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from mmapps_domains.medical.metrics import finding_names, records_to_arrays


def _fmt(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def findings_sections(ctx: Any) -> list:
    """All medical sections (the ``Domain.report_sections`` entry)."""
    from mmapps_domains.medical.gradcam import gradcam_section

    records = ctx.records.get("findings", [])
    if not records:
        return []
    sections = [table_section(ctx), calibration_section(ctx), roc_section(ctx)]
    try:
        sections.append(gradcam_section(ctx))
    except Exception as err:  # a saliency failure must not lose the metrics report
        from mmapps.report import Section

        sections.append(Section("Grad-CAM", f"Grad-CAM could not be computed: {type(err).__name__}: {err}"))
    return sections


def table_section(ctx: Any):
    """Per-finding AUROC [95% CI by patient], AUPRC, ECE and the validation-chosen operating point."""
    from mmapps.report import Section
    from mmapps.report.model import markdown_table

    m = ctx.metrics
    arrays = records_to_arrays(ctx.records["findings"])
    names = finding_names(ctx.cfg, arrays.y.shape[1])
    rows = []
    for name in names:
        ci = f"[{_fmt(m.get(f'auroc/{name}/ci_low'))}, {_fmt(m.get(f'auroc/{name}/ci_high'))}]"
        rows.append([name, int(m.get(f"n_pos/{name}", 0)), _fmt(m.get(f"auroc/{name}")), ci, _fmt(m.get(f"auprc/{name}")),
                     _fmt(m.get(f"ece/{name}")), _fmt(m.get(f"threshold/{name}")), _fmt(m.get(f"sens/{name}")),
                     _fmt(m.get(f"spec/{name}")), _fmt(m.get(f"ppv/{name}")), _fmt(m.get(f"npv/{name}")), _fmt(m.get(f"f1/{name}"))])
    table = markdown_table(["finding", "n pos", "AUROC", "95% CI (patients)", "AUPRC", "ECE", "threshold", "sens", "spec", "PPV", "NPV", "F1"], rows)
    summary = (
        f"Macro AUROC **{_fmt(m.get('auroc/macro'))}** [{_fmt(m.get('auroc/macro/ci_low'))}, {_fmt(m.get('auroc/macro/ci_high'))}], "
        f"micro AUROC {_fmt(m.get('auroc/micro'))}, mean AUROC over the 5 CheXpert competition findings "
        f"{_fmt(m.get('auroc/competition5'))}, macro AUPRC {_fmt(m.get('auprc/macro'))}, macro ECE {_fmt(m.get('ece/macro'))}.\n\n"
        "Confidence intervals: percentile bootstrap resampling patients (all studies of a patient together). "
        "Thresholds are chosen on the validation split (Youden's J unless `eval.options.threshold_method=sensitivity`) "
        "and applied unchanged to the test split. Labels ignored by the uncertainty policy are left out per finding.\n\n"
    )
    strata = [[k.removeprefix("auroc/macro/"), int(m.get("n/" + k.removeprefix("auroc/macro/"), 0)), _fmt(v)] for k, v in sorted(m.items()) if k.startswith("auroc/macro/") and "=" in k]
    strata_md = "\n\nMacro AUROC by stratum (view, sex, age band):\n\n" + markdown_table(["stratum", "studies", "macro AUROC"], strata) if strata else ""
    return Section("Findings: AUROC with 95% CI", summary + table + strata_md)


def calibration_section(ctx: Any):
    """Reliability diagram (15 equal-width bins), pooled over findings and for the competition findings."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mmapps.report import Section

    arrays = records_to_arrays(ctx.records["findings"])
    y, s = arrays.y.ravel(), arrays.s.ravel()
    keep = ~np.isnan(y)
    y, s = y[keep], s[keep]
    edges = np.linspace(0, 1, 16)
    bins = np.clip(np.floor(s * 15).astype(int), 0, 14)
    centres, observed, counts = [], [], []
    for b in range(15):
        inside = bins == b
        if inside.any():
            centres.append(s[inside].mean())
            observed.append(y[inside].mean())
            counts.append(int(inside.sum()))
    ctx.figures_dir.mkdir(parents=True, exist_ok=True)
    path = Path(ctx.figures_dir) / "medical_reliability.png"
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.plot(centres, observed, "o-", label="model (all findings pooled)")
    ax.bar(edges[:-1] + 1 / 30, np.bincount(bins, minlength=15) / max(len(s), 1), width=1 / 15, alpha=0.2, label="share of predictions")
    ax.set(xlabel="predicted probability", ylabel="observed frequency", xlim=(0, 1), ylim=(0, 1), title="Reliability (15 bins)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    ece = ctx.metrics.get("ece/macro")
    text = f"Expected calibration error (15 equal-width bins), mean over findings: {_fmt(ece)}. Per-finding ECE is in the table above."
    return Section("Calibration", text, [path])


def roc_section(ctx: Any):
    """ROC curves of every finding with at least one positive and one negative test study."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mmapps.metrics.classification import roc_curve
    from mmapps.report import Section

    arrays = records_to_arrays(ctx.records["findings"])
    names = finding_names(ctx.cfg, arrays.y.shape[1])
    fig, axes = plt.subplots(3, 5, figsize=(15, 9))
    drawn = 0
    for j, name in enumerate(names[:15]):
        ax = axes.flat[j]
        yj = arrays.y[:, j]
        known = yj[~np.isnan(yj)]
        if known.size and 0 < known.sum() < known.size:
            curve = roc_curve(yj, arrays.s[:, j])
            ax.plot(curve.x, curve.y)
            drawn += 1
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set_title(f"{name}\nAUROC {_fmt(ctx.metrics.get(f'auroc/{name}'))}", fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    ctx.figures_dir.mkdir(parents=True, exist_ok=True)
    path = Path(ctx.figures_dir) / "medical_roc.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return Section("ROC curves", f"Test-split ROC curves ({drawn} findings with both classes present).", [path])
