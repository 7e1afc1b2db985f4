"""The `prune` verb of every domain."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mmapps.cli.errors import user_errors


def register(app: typer.Typer, name: str) -> None:
    """Add `mmapps <name> prune` to the domain's sub-app."""

    @app.command("prune")
    @user_errors
    def prune(
        checkpoint: Path = typer.Option(..., "--checkpoint", help="a .safetensors checkpoint written by train"),
        amount: float = typer.Option(0.3, "--amount", help="share of channels removed (magnitude: of weights zeroed), in [0, 1)"),
        method: str = typer.Option("channels", "--method", help="channels (structured: smaller, faster) or magnitude (unstructured zeros: compressible file, not faster)"),
        drop_text_layers: int = typer.Option(0, "--drop-text-layers", min=0, help="remove the top N layers of the frozen text transformer"),
        finetune_epochs: int = typer.Option(0, "--finetune-epochs", min=0, help="fine-tune the pruned model this many epochs with the normal trainer"),
        out: Path | None = typer.Option(None, "--out", help="new folder for the pruned run (default <run>/pruned-<method>-<amount>)"),
        data: Path | None = typer.Option(None, "--data", help="data root (default: the one the model was trained on)"),
        set_: list[str] = typer.Option([], "--set", help="override a field: --set train.lr=1e-4 (repeatable)"),
    ) -> None:
        """Prune a checkpoint (structured channels or magnitude), optionally fine-tune, test and report."""
        from mmapps.config import deep_merge, parse_override
        from mmapps.plugins import get_domain
        from mmapps.prune.workflow import prune as run_prune

        overrides: dict[str, Any] = {}
        for text in set_:
            overrides = deep_merge(overrides, parse_override(text))
        if data is not None:
            overrides = deep_merge(overrides, {"data": {"root": str(data)}})
        result = run_prune(checkpoint, get_domain(name), out, amount, method, drop_text_layers, finetune_epochs, overrides)
        s = result.summary
        typer.echo(f"parameters {s.parameters_before:,} -> {s.parameters_after:,}; MACs/sample {s.macs_before / 1e6:.2f} M -> {s.macs_after / 1e6:.2f} M")
        for key, value in _primary(result.metrics, get_domain(name)).items():
            typer.echo(f"{key}: {value:.4f}")
        typer.echo(f"pruned checkpoint: {result.checkpoint}")
        typer.echo(f"report: {result.report}")


def _primary(metrics: dict[str, Any], domain: Any) -> dict[str, float]:
    keys = [t.primary_metric for t in domain.tasks]
    return {k: metrics[k] for k in keys if isinstance(metrics.get(k), float)}
