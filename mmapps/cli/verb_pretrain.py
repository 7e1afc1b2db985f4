"""The `pretrain` verb of every domain."""

from __future__ import annotations

import typer


def register(app: typer.Typer, name: str) -> None:
    """Add `mmapps <name> pretrain` to the domain's sub-app."""
