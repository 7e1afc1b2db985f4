"""Report sections: score timelines per modality against the ground truth, and the alarm metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

TIMELINE_CLIPS = 4


def modality_scores(model: Any, sample: Any, modalities: list[str], layouts: dict[str, str]) -> dict[str, np.ndarray]:
    """Anomaly score per window (max over classes) of the fused model and of each modality alone.

    Returns:
        name -> (W,) scores; ``fused`` uses every modality, ``<m> only`` hides the others.
    """
    import torch

    from mmapps.data import collate_samples

    batch = collate_samples([sample], {m: layouts[m] for m in modalities})
    device = next(model.parameters()).device
    batch = batch.to(device)
    out = {}
    with torch.no_grad():
        for name in ["fused"] + modalities:
            if name != "fused" and not bool(batch.inputs[name].present.all()):
                continue
            inputs = {m: mb if name in ("fused", m) else mb.select(torch.zeros_like(mb.present)) for m, mb in batch.inputs.items()}
            view = type(batch)(inputs, batch.targets, batch.sample_ids, batch.group_ids, batch.meta)
            logits = model(view)["events"][0, : len(sample.meta["window_starts"])]  # (W, C)
            out[name if name == "fused" else f"{name} only"] = logits.sigmoid().amax(-1).float().cpu().numpy()
    return out


def plot_timeline(path: Path, sample: Any, curves: dict[str, np.ndarray]) -> Path:
    """PNG: per-window scores (step lines) over the ground-truth segments (shaded)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    meta = sample.meta
    fig, ax = plt.subplots(figsize=(8, 2.6))
    colours = {"fight": "tab:red", "fall": "tab:orange", "intrusion": "tab:purple"}
    for start, end, name in meta["segments"]:
        ax.axvspan(start, end, color=colours.get(name, "tab:gray"), alpha=0.2, label=f"true {name}")
    edges = np.append(meta["window_starts"], meta["window_starts"][-1] + meta["window_s"])
    for name, scores in curves.items():
        ax.stairs(scores, edges, label=name, linewidth=2.2 if name == "fused" else 1.2)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=7, loc="upper right", ncol=2)
    ax.set(xlim=(0, meta["duration"]), ylim=(0, 1.02), xlabel="seconds", ylabel="anomaly score", title=f"clip {sample.sample_id}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def timeline_sections(ctx: Any) -> list:
    """Score timelines of a few test clips (clips with events first), fused and per modality."""
    from mmapps.models.build import selected_modalities
    from mmapps.report import Section

    if ctx.model is None or ctx.test_dataset is None or len(ctx.test_dataset) == 0:
        return []
    modalities = selected_modalities(ctx.cfg, ctx.domain)
    layouts = {m: ctx.domain.modality(m).layout for m in modalities}
    order = sorted(range(len(ctx.test_dataset)), key=lambda i: -len(ctx.test_dataset[i].meta["segments"]))[:TIMELINE_CLIPS]
    ctx.figures_dir.mkdir(parents=True, exist_ok=True)
    figures, model = [], ctx.model.eval()
    for i in order:
        sample = ctx.test_dataset[i]
        curves = modality_scores(model, sample, modalities, layouts)
        figures.append(plot_timeline(ctx.figures_dir / f"timeline_{sample.sample_id}.png", sample, curves))
    text = (
        "Per-window anomaly score (max over event classes) of the fused model and of the same model "
        "with only one modality present, against the ground-truth segments (shaded)."
    )
    return [Section("Surveillance: score timelines", text, figures)]


def alarm_sections(ctx: Any) -> list:
    """Frame-level, event-level and alarm metrics in one table, with their definitions."""
    from mmapps.report import Section, markdown_table

    keys = [k for k in sorted(ctx.metrics) if k.startswith(("frame/", "event/map", "alarm/")) and "/ci_" not in k]
    rows = []
    for k in keys:
        value = ctx.metrics[k]
        low, high = ctx.metrics.get(f"{k}/ci_low"), ctx.metrics.get(f"{k}/ci_high")
        ci = f"[{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""
        rows.append([k, f"{value:.4f}" if isinstance(value, float) else value, ci])
    text = (
        markdown_table(["metric", "value", "95% CI (clips resampled)"], rows)
        + "\n\nframe/ap is scikit-learn's average_precision_score; frame/ap_xd is auc(recall, precision) as in the "
        "XD-Violence code. Event AP: windows >= 0.5 merged across gaps of <= 1 window, THUMOS matching. "
        "The alarm threshold gives 90% event recall on validation; false alarms are alerts overlapping no event."
    )
    return [Section("Surveillance: detection and alarms", text)]
