"""Domain CLI verbs: ``mmapps medical deidentify IN OUT``."""

from __future__ import annotations

from pathlib import Path

import typer

from mmapps.cli.errors import user_errors
from mmapps.errors import ConfigError, DataError


def add_commands(app: typer.Typer) -> None:
    """Add the medical verbs to the domain's Typer app (imports stay lazy inside the commands)."""

    @app.command("deidentify")
    @user_errors
    def deidentify(
        source: Path = typer.Argument(..., help="a DICOM file or a folder of DICOM files"),
        out: Path = typer.Argument(..., help="output folder: <StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm, new UIDs"),
        key_file: Path | None = typer.Option(None, "--key-file", help="file holding your secret key (e.g. `openssl rand -hex 32`); new UIDs and pseudonyms are HMACs under it"),
        key_env: str | None = typer.Option(None, "--key-env", help="name of an environment variable holding the key (instead of --key-file)"),
        retain_full_dates: bool = typer.Option(False, "--retain-full-dates", help="Retain Longitudinal Temporal Information with Full Dates (E.3.6)"),
        retain_modified_dates: bool = typer.Option(False, "--retain-modified-dates", help="... with Modified Dates: dates shifted back by a keyed per-patient offset (E.3.6)"),
        retain_patient_characteristics: bool = typer.Option(False, "--retain-patient-characteristics", help="keep sex, age, size, weight... (E.3.7), e.g. for stratified evaluation"),
        retain_device_identity: bool = typer.Option(False, "--retain-device-identity", help="keep device serial numbers, station names... (E.3.8)"),
        retain_institution_identity: bool = typer.Option(False, "--retain-institution-identity", help="keep institution name and address (E.3.9)"),
        retain_uids: bool = typer.Option(False, "--retain-uids", help="keep the original UIDs (E.3.9)"),
        retain_safe_private: bool = typer.Option(False, "--retain-safe-private", help="keep the private attributes of Table E.3.10-1 (E.3.10); all others are removed"),
        safe_private: Path | None = typer.Option(None, "--safe-private", help="JSON of site-verified safe private attributes, added to the shipped list"),
        clean_descriptors: bool = typer.Option(False, "--clean-descriptors", help="keep descriptions and comments, identifiers scrubbed (E.3.11)"),
        clean_structured_content: bool = typer.Option(False, "--clean-structured-content", help="keep SR content, identifiers scrubbed (E.3.12)"),
        clean_graphics: bool = typer.Option(False, "--clean-graphics", help="keep graphic annotations, text scrubbed; overlay bitmaps are still removed (E.3.13)"),
        burned_in: str = typer.Option("refuse", "--burned-in", help="files with BurnedInAnnotation YES or absent: 'refuse', or 'write-unverified' (PatientIdentityRemoved NO)"),
        on_error: str = typer.Option("skip", "--on-error", help="'skip' (and list) refused files, or 'stop' at the first one"),
        report: Path | None = typer.Option(None, "--report", help="also write the summary as JSON (it names the inputs: keep it with the identified data)"),
    ) -> None:
        """Write de-identified copies (DICOM PS3.15 Annex E Basic Profile and options) and list every input."""
        from mmapps_domains.medical.deid import (
            DeidOptions,
            deidentify_tree,
            load_key,
            write_report,
        )
        from mmapps_domains.medical.deid.safe_private import (
            read_safe_private,
            shipped_safe_private,
        )

        if on_error not in ("skip", "stop"):
            raise ConfigError(f"--on-error {on_error!r}: accepted 'skip' or 'stop'")
        try:
            options = DeidOptions(
                retain_full_dates=retain_full_dates, retain_modified_dates=retain_modified_dates,
                retain_patient_characteristics=retain_patient_characteristics, retain_device_identity=retain_device_identity,
                retain_institution_identity=retain_institution_identity, retain_uids=retain_uids, retain_safe_private=retain_safe_private,
                clean_descriptors=clean_descriptors, clean_structured_content=clean_structured_content, clean_graphics=clean_graphics,
                burned_in=burned_in,  # type: ignore[arg-type]
            )
        except ValueError as err:
            raise ConfigError(str(err)) from None
        key, key_warnings = load_key(key_file, key_env)
        safe = shipped_safe_private() | read_safe_private(safe_private) if safe_private else None
        summary = deidentify_tree(source, out, key, options, on_error=on_error, safe_private=safe)  # type: ignore[arg-type]
        summary.warnings[:0] = key_warnings
        for line in summary.lines():
            typer.echo(line)
        if report is not None:
            write_report(summary, report)
        if summary.files == 0:
            raise DataError(f"no file was de-identified from {source}: {summary.count('refused')} refused, "
                            f"{summary.count('skipped')} skipped (each listed above with its reason)")
