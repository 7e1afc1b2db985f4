"""The ``mmapps new-domain`` command (mounted on the root app by `mmapps.cli.main`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mmapps.cli.errors import user_errors


def add_new_domain_command(app: typer.Typer) -> None:
    @app.command("new-domain")
    @user_errors
    def new_domain_command(
        name: str = typer.Argument(..., help="domain name: the CLI name and entry point (lower case, e.g. ecg)"),
        modalities: str = typer.Option(..., "--modalities", help="comma-separated NAME[:KIND] items, e.g. image,note:text,vitals:tabular"),
        task: str = typer.Option(..., "--task", help="multiclass, multilabel or regression"),
        labels: Optional[str] = typer.Option(None, "--labels", help="comma-separated class / label / target names"),
        task_name: Optional[str] = typer.Option(None, "--task-name", help="the task's name (default: label, labels or target)"),
        description: Optional[str] = typer.Option(None, "--description", help="the one line `mmapps domains` shows"),
        out: Optional[Path] = typer.Option(None, "--out", help="folder to write the package into (default ./mmapps-NAME)"),
        force: bool = typer.Option(False, "--force", help="overwrite the generated files in an existing folder"),
    ) -> None:
        """Write a complete, installable domain plugin package that passes its own tests and trains at once."""
        from mmapps.scaffold import new_domain

        folder = new_domain(name, modalities, task, out, labels, task_name, description, force)
        typer.echo(f"plugin package written: {folder}")
        typer.echo(f"next: pip install -e {folder} && (cd {folder} && pytest) && mmapps {name} check && mmapps {name} train")
