"""Domain CLI verbs: ``mmapps medical deidentify IN OUT``."""

from __future__ import annotations

from pathlib import Path

import typer


def add_commands(app: typer.Typer) -> None:
    """Add the medical verbs to the domain's Typer app (imports stay lazy inside the commands)."""

    @app.command("deidentify")
    def deidentify(
        source: Path = typer.Argument(..., help="a DICOM file or a folder of DICOM files"),
        out: Path = typer.Argument(..., help="output folder (same relative paths)"),
        retain_patient_characteristics: bool = typer.Option(False, "--retain-patient-characteristics", help="keep sex, age, size, weight (PS3.15 E.3.7 option), e.g. for stratified evaluation"),
    ) -> None:
        """Write de-identified copies (DICOM PS3.15 Annex E Basic Profile) and print what changed."""
        from mmapps_domains.medical.deidentify import deidentify_tree

        try:
            summary = deidentify_tree(source, out, retain_patient_characteristics)
        except FileNotFoundError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(2) from None
        for line in summary.lines():
            typer.echo(line)
        if summary.files == 0:
            typer.echo(f"error: no DICOM file found under {source}", err=True)
            raise typer.Exit(3)
