"""The pretraining report: held-out L_m vs the trivial predictor, with the other modalities present vs hidden,
loss curves, original / masked / reconstructed pictures and cross-modal nearest neighbours.

No sample or group id is written (they may hold patient identifiers): samples are numbered by
their position in the held-out set.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmapps.pretrain.baseline import PositionMean, evaluate, evaluating


def write_pretrain_report(run_dir: Path, cfg: Any, domain: Any, model: Any, held_loader: Any, means: dict[str, PositionMean], runtime: Any, history: list[dict[str, Any]], info: dict[str, Any]) -> tuple[dict[str, float], Path]:
    figures = run_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    metrics = evaluate(model, held_loader, runtime.device, means, hide_others=True) if held_loader is not None else {}
    retrieval, neighbours = _neighbours(model, held_loader, runtime.device) if held_loader is not None and model.contrast is not None else ({}, [])
    metrics.update(retrieval)
    (run_dir / "metrics.json").write_text(json.dumps({k: (v if math.isfinite(v) else None) for k, v in metrics.items()}, indent=2, sort_keys=True))
    curves = _plot_curves(run_dir, figures, history, model.modalities)
    pictures = _pictures(model, held_loader, runtime.device, figures, cfg.pretrain.report_samples) if held_loader is not None else []
    lines = [f"# Pretraining report: {domain.name} ({cfg.recipe})", ""]
    lines += ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in info.items()] + [""]
    lines += ["## Held-out reconstruction per modality", "",
              "L_m on the held-out part of the train split (the same masks every epoch), beside the per-position mean predictor "
              "fitted on the pool, and with every other modality hidden (how much the model draws on the other modalities).", "",
              "| modality | mask unit | target | ratio | lambda | L_m | trivial | L_m / trivial | L_m, others hidden |", "|---|---|---|---|---|---|---|---|---|"]
    for m in model.modalities:
        objective = model.objectives[m]
        value, trivial, alone = metrics.get(f"loss/{m}", math.nan), metrics.get(f"trivial/{m}", math.nan), metrics.get(f"loss/{m}/others_hidden", math.nan)
        lines.append(f"| {m} | {objective.unit} | {objective.target_name} | {objective.ratio:.2f} | {model.weights[m]:g} | {value:.4f} | {trivial:.4f} | {value / trivial if trivial else math.nan:.3f} | {alone:.4f} |")
    lines += ["", f"Weighted held-out reconstruction (selects the checkpoint, stops early): **{metrics.get('recon', math.nan):.4f}**.", ""]
    if retrieval:
        lines += ["## Cross-modal retrieval (contrastive embeddings, held-out)", "", "| query -> gallery | recall@1 | recall@5 | chance@1 |", "|---|---|---|---|"]
        for key in sorted(k for k in retrieval if k.endswith("/r@1")):
            pair = key.split("/")[1]
            lines.append(f"| {pair} | {retrieval[key]:.3f} | {retrieval.get(key.replace('r@1', 'r@5'), math.nan):.3f} | {retrieval.get(key.replace('r@1', 'chance'), math.nan):.3f} |")
        lines += ["", "Nearest neighbours of the first held-out samples (held-out numbers; the true partner is the same number):", ""]
        lines += ["| query -> gallery | sample | nearest | 2nd | 3rd |", "|---|---|---|---|---|"] + neighbours + [""]
    if curves:
        lines += ["## Loss curves", "", f"![losses](figures/{curves})", ""]
    if pictures:
        lines += ["## Original / masked / reconstructed (held-out)", ""] + [f"![{p}](figures/{p})" for p in pictures] + [""]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines))
    return metrics, path


def _plot_curves(run_dir: Path, figures: Path, history: list[dict[str, Any]], modalities: tuple[str, ...]) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps_path = run_dir / "logs" / "pretrain_steps.csv"
    if not steps_path.exists():
        return None
    with steps_path.open() as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    step = [int(r["step"]) for r in rows]
    for key in [k for k in rows[0] if k.startswith("loss/")]:
        axes[0].plot(step, [float(r[key]) if r[key] not in ("", "nan") else np.nan for r in rows], label=key[5:], lw=1)
    axes[0].set(xlabel="step", ylabel="train loss", yscale="log", title="per step: L_m, contrastive, total")
    axes[0].legend(fontsize=7)
    epochs = [h["epoch"] + 1 for h in history]
    for m in modalities:
        values = [h.get(f"val/loss/{m}", np.nan) for h in history]
        axes[1].plot(epochs, values, marker="o", label=m)
    axes[1].set(xlabel="epoch", ylabel="held-out L_m", title="per epoch, held-out")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(figures / "pretrain_losses.png", dpi=90)
    plt.close(fig)
    return "pretrain_losses.png"


def _pictures(model: Any, loader: Any, device: torch.device, figures: Path, count: int) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if count == 0:
        return []
    batch = next(iter(loader), None)
    if batch is None:
        return []
    batch = batch.to(device)
    names = []
    with evaluating(model):
        step = model(batch)
    for m in step.targets:
        objective = model.objectives[m]
        for i in range(min(count, len(batch))):
            panels = objective.render(batch.inputs[m], step.masks[m], step.predictions[m], step.targets[m], i)
            if not panels:
                break
            fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.2))
            for ax, (title, image) in zip(np.atleast_1d(axes), panels.items()):
                ax.imshow(image, cmap=getattr(objective, "picture_cmap", "gray"), aspect="auto" if getattr(objective, "picture_cmap", "gray") != "gray" else "equal")
                ax.set_title(title, fontsize=9)
                ax.axis("off")
            fig.suptitle(f"{m}: held-out sample {i}", fontsize=9)
            name = f"pretrain_{m}_{i}.png"
            fig.savefig(figures / name, dpi=90)
            plt.close(fig)
            names.append(name)
    return names


def _neighbours(model: Any, loader: Any, device: torch.device, shown: int = 5) -> tuple[dict[str, float], list[str]]:
    """Recall@1/5 of each modality's embedding retrieving its sample's other-modality embedding."""
    collected: dict[str, list[torch.Tensor]] = {}
    valid: dict[str, list[torch.Tensor]] = {}
    with evaluating(model):
        for batch in loader:
            step = model(batch.to(device))
            for m, (z, ok) in step.embeddings.items():
                collected.setdefault(m, []).append(z.cpu())
                valid.setdefault(m, []).append(ok.cpu())
    metrics, rows = {}, []
    names = sorted(collected)
    for a in names:
        for b in names:
            if a == b or len(collected[a]) != len(collected[b]):
                continue
            za, zb = torch.cat(collected[a]), torch.cat(collected[b])
            both = (torch.cat(valid[a]) & torch.cat(valid[b])).nonzero().squeeze(1)
            if both.numel() < 2:
                continue
            sims = za[both] @ zb[both].T  # (n, n)
            order = sims.argsort(dim=1, descending=True)
            truth = torch.arange(both.numel()).unsqueeze(1)
            metrics[f"retrieval/{a}->{b}/r@1"] = float((order[:, :1] == truth).any(1).float().mean())
            metrics[f"retrieval/{a}->{b}/r@5"] = float((order[:, :5] == truth).any(1).float().mean())
            metrics[f"retrieval/{a}->{b}/chance"] = 1.0 / both.numel()
            for q in range(min(shown, both.numel())):
                top = [str(int(both[j])) for j in order[q, :3]]
                rows.append(f"| {a} -> {b} | {int(both[q])} | " + " | ".join(top + [""] * (3 - len(top))) + " |")
    return metrics, rows
