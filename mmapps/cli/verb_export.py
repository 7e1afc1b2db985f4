"""The `export` verb of every domain."""

from __future__ import annotations

from pathlib import Path

import typer

from mmapps.cli.errors import user_errors


def register(app: typer.Typer, name: str) -> None:
    """Add `mmapps <name> export` to the domain's sub-app."""

    @app.command("export")
    @user_errors
    def export(
        checkpoint: Path = typer.Option(..., "--checkpoint", help="a .safetensors checkpoint written by train"),
        out: Path = typer.Option(..., "--out", help="export folder (model.onnx, model.json, MODEL_CARD.md, triton/)"),
        quantize: str = typer.Option("none", "--quantize", help="none, dynamic or static (int8)"),
        opset: int = typer.Option(18, "--opset", help="ONNX opset (18 or newer)"),
        data: Path | None = typer.Option(None, "--data", help="data root for parity and calibration (default: the checkpoint's)"),
        calibration_samples: int = typer.Option(64, "--calibration-samples", help="training samples for static int8 calibration"),
        triton_name: str | None = typer.Option(None, "--triton-name", help="Triton model name (default: the domain name)"),
        set_: list[str] = typer.Option([], "--set", help="override a data field: --set data.options.x=y (repeatable)"),
    ) -> None:
        """Export a checkpoint to ONNX (optional modalities as presence inputs), check parity with PyTorch, write the sidecar, model card and Triton repository."""
        from mmapps.config import deep_merge, parse_override
        from mmapps.export import export_checkpoint
        from mmapps.plugins import get_domain

        overrides: dict = {}
        for text in set_:
            overrides = deep_merge(overrides, parse_override(text))
        if data is not None:
            overrides = deep_merge(overrides, {"data": {"root": str(data)}})
        result = export_checkpoint(checkpoint, get_domain(name), out, opset, quantize, overrides, calibration_samples, triton_name)
        for line in result.parity.lines():
            typer.echo(line)
        size = sum(result.files.values()) / 1e6
        typer.echo(f"exported in {result.seconds:.1f} s: {result.model} ({size:.1f} MB in {len(result.files)} files), sidecar {result.sidecar}")
