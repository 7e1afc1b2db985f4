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
        calibration_method: str = typer.Option("minmax", "--calibration-method", help="static int8 activation ranges: minmax, entropy or percentile (99.999th)"),
        int8_max_drop: str = typer.Option("auto", "--int8-max-drop", help="int8 accuracy goal on the validation metric drop's 95% CI upper bound; above it the most sensitive layers stay fp32 (auto: 0.01 AUROC/AUC, 0.02 AP; none: no search)"),
        precision: str = typer.Option("fp32", "--precision", help="fp32, or fp16 to add a half-precision GPU graph (fp32 inputs and outputs)"),
        triton_name: str | None = typer.Option(None, "--triton-name", help="Triton model name (default: the domain name)"),
        set_: list[str] = typer.Option([], "--set", help="override a data field: --set data.options.x=y (repeatable)"),
    ) -> None:
        """Export a checkpoint to ONNX (optional modalities as presence inputs), check parity with PyTorch, write the sidecar, model card and Triton repository."""
        from mmapps.config import deep_merge, parse_override
        from mmapps.export import export_checkpoint
        from mmapps.export.drop import parse_max_drop
        from mmapps.plugins import get_domain

        overrides: dict = {}
        for text in set_:
            overrides = deep_merge(overrides, parse_override(text))
        if data is not None:
            overrides = deep_merge(overrides, {"data": {"root": str(data)}})
        domain = get_domain(name)
        result = export_checkpoint(
            checkpoint, domain, out, opset, quantize, overrides, calibration_samples, triton_name,
            calibration_method=calibration_method, int8_max_drop=parse_max_drop(int8_max_drop, domain), precision=precision,
        )
        for line in result.parity.lines() + result.variant_lines():
            typer.echo(line)
        size = sum(result.files.values()) / 1e6
        typer.echo(f"exported in {result.seconds:.1f} s: {result.model} ({size:.1f} MB in {len(result.files)} files), sidecar {result.sidecar}")
