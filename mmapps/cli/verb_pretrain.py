"""The `pretrain` verb of every domain."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer

from mmapps.cli.errors import user_errors


def register(app: typer.Typer, name: str) -> None:
    """Add `mmapps <name> pretrain` to the domain's sub-app."""

    @app.command("pretrain")
    @user_errors
    def pretrain(
        recipe: Optional[str] = typer.Option(None, help="smoke, quick, default or gpu: the domain's recipe of that name with the core pretraining schedule over it"),
        config: Optional[Path] = typer.Option(None, "--config", help="YAML file of config values (may name a recipe)"),
        set_: List[str] = typer.Option([], "--set", help="override a field: --set pretrain.loss_weights.image=2 (repeatable)"),
        data: Optional[Path] = typer.Option(None, "--data", "--data-root", help="data root, labels ignored (a folder without labels where the domain's reader allows it); default: the demo data"),
        out: Optional[Path] = typer.Option(None, "--out", help="run directory; default runs/<domain>-pretrain-<recipe>-..."),
        resume: Optional[Path] = typer.Option(None, "--resume", help="continue the pretraining in this directory from its last checkpoint"),
        seed: Optional[int] = typer.Option(None, help="random seed (also keys the mask draws)"),
    ) -> None:
        """Self-supervised masked multimodal pretraining on the train split; writes weights for `train --init`."""
        from mmapps.plugins import get_domain
        from mmapps.pretrain.recipes import resolve_pretrain_config
        from mmapps.pretrain.workflow import pretrain as run_pretrain

        domain = get_domain(name)
        extra: dict[str, Any] = {}
        if data is not None:
            extra.setdefault("data", {})["root"] = str(data)
        if seed is not None:
            extra["seed"] = seed
        if out is not None or resume is not None:
            extra["out_dir"] = str(resume or out)
        cfg = resolve_pretrain_config(domain, recipe, config, set_, extra)
        result = run_pretrain(cfg, domain, resume=resume is not None)
        if result.report is None:  # a non-main process under torchrun
            return
        for m in sorted(k[5:] for k in result.metrics if k.startswith("loss/") and k.count("/") == 1):
            trivial = result.metrics.get(f"trivial/{m}")
            typer.echo(f"held-out L_{m}: {result.metrics[f'loss/{m}']:.4f}" + (f" (per-position mean predictor {trivial:.4f})" if trivial is not None else ""))
        typer.echo(f"pretrained weights: {result.checkpoint}")
        typer.echo(f"report: {result.report}")
        typer.echo(f"fine-tune with: mmapps {name} train --init {result.run_dir}")
